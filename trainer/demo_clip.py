"""Train the tiny offline demo CLIP on captioned generated images (`trainer.captions`).

Pretrained weights cannot be downloaded everywhere, and a random backbone gives the adapter weak
features and instructions no meaning. So the bundled `assets/demo_clip/` is an open_clip `CLIP` of the
tiny config below, trained from scratch with open_clip's own `ClipLoss` on shape scenes and on crops
of the *training* photos of `synthetic.split_photos` (the benchmarks' test photos are never seen).

Everything is seeded and single-threaded by default, so a rebuild gives the same weights. Captions
are at most `MAX_TOKENS` long, so the text tower runs on that prefix of the 77-token context: with a
causal mask the EOT feature is exactly what the full context gives, at half the cost.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import open_clip
import safetensors.torch
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from PIL import Image

from .captions import EXTRA_IMAGES, Sample, photos, scenes
from .synthetic import split_photos

TINY_CONFIG = {
    "embed_dim": 64,
    # avg pool: the pooled embedding is the mean of the patch tokens the adapter reads, so the
    # contrastive loss trains those tokens directly (with "tok" only the CLS output is trained).
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8, "pool_type": "avg"},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
PREPROCESS = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
              "interpolation": "bicubic", "resize_mode": "squash"}
MAX_TOKENS = 40
IMAGE = TINY_CONFIG["vision_cfg"]["image_size"]


def generate(n_scenes: int, n_photos: int, photo_names, seed: int, blur_p: float | None = None) -> list[Sample]:
    """Captioned samples, a share drawn at 128 px (then squashed to 64 px like the app's inputs)."""
    rng = np.random.default_rng(seed)
    big = lambda n: int(round(0.3 * n))  # noqa: E731
    seeds = rng.integers(0, 2**31, 4)
    return (scenes(n_scenes - big(n_scenes), seed=int(seeds[0]), size=IMAGE, degrade_p=0.25)
            + scenes(big(n_scenes), seed=int(seeds[1]), size=2 * IMAGE, degrade_p=0.25)
            + photos(n_photos - big(n_photos), photo_names, seed=int(seeds[2]), size=IMAGE, blur_p=blur_p)
            + photos(big(n_photos), photo_names, seed=int(seeds[3]), size=2 * IMAGE, blur_p=blur_p))


def to_pixels(images: list[Image.Image]) -> torch.Tensor:
    """uint8 [N, 3, 64, 64], resized as the model's squash transform does (PIL bicubic)."""
    arrays = [np.asarray(im.convert("RGB").resize((IMAGE, IMAGE), Image.BICUBIC) if im.size != (IMAGE, IMAGE)
                         else im.convert("RGB")) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(PREPROCESS["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS["std"]).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def tokenize(texts: list[str]) -> torch.Tensor:
    ids = open_clip.get_tokenizer("ViT-B-32")(texts)  # the tokenizer `local-dir:` loads (open_clip's BPE)
    if int((ids > 0).sum(-1).max()) > MAX_TOKENS:
        raise ValueError(f"A caption is longer than {MAX_TOKENS} tokens.")
    return ids[:, :MAX_TOKENS]


def encode_text(model: open_clip.CLIP, ids: torch.Tensor) -> torch.Tensor:
    """`CLIP.encode_text` on a context prefix (identical output: the attention mask is causal)."""
    t = ids.shape[1]
    x = model.token_embedding(ids) + model.positional_embedding[:t]
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:t, :t]))  # [N, T, W]
    return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ model.text_projection  # EOT has the largest id


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's rule: no weight decay on gains, biases, embeddings of rank < 2 and logit_scale."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        (plain if p.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name else decay).append(p)
    return [{"params": plain, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


@torch.no_grad()
def retrieval(model: open_clip.CLIP, samples: list[Sample]) -> dict[str, float]:
    """Image->text top-1/top-5 among the samples' distinct captions, and chance (1 / #captions)."""
    model.eval()
    device = next(model.parameters()).device
    texts = sorted({s.caption for s in samples})
    where = {t: i for i, t in enumerate(texts)}
    img = F.normalize(model.encode_image(normalise(to_pixels([s.image for s in samples])).to(device)), dim=-1)
    txt = F.normalize(encode_text(model, tokenize(texts).to(device)), dim=-1)
    ranks = (img @ txt.T).argsort(dim=-1, descending=True).cpu()
    truth = torch.tensor([where[s.caption] for s in samples])
    hit = ranks == truth[:, None]
    return {"top1": float(hit[:, :1].any(-1).float().mean()), "top5": float(hit[:, :5].any(-1).float().mean()),
            "chance_top1": 1.0 / len(texts), "captions": len(texts), "images": len(samples)}


def held_out(seed: int = 10_000, n: int = 300, seen_photos: bool = False) -> dict[str, list[Sample]]:
    """Evaluation sets never trained on: new scene seeds, and the benchmarks' test photos (whose
    objects the captions never named); optionally new crops of the training photos too."""
    train_photos, test_photos = split_photos(0.25, seed=0)
    out = {"scenes": scenes(n, seed=seed, size=IMAGE), "photos": photos(n, test_photos, seed=seed + 1, size=IMAGE)}
    if seen_photos:
        out["new crops of training photos"] = photos(n, train_photos, seed=seed + 2, size=IMAGE)
    return out


def train(steps: int = 4500, batch_size: int = 128, lr: float = 2e-3, weight_decay: float = 0.1,
          warmup: int = 200, n_scenes: int = 25_000, n_photos: int = 25_000, seed: int = 0,
          blur_p: float | None = 0.7,
          log_every: int = 250, log=print, device: str = "cpu") -> tuple[open_clip.CLIP, dict]:
    """Train the tiny CLIP from scratch; returns the model (on the CPU) and a summary (times, final metrics).

    `blur_p=0.7` blurs 70 % of the photo crops (about 28 % with `None`, when blur is drawn like the
    other degradations): blur is what the frozen 64-px features rank worst (bench/demo_clip_recipes.py).

    The shipped weights come from the CPU; `device="cuda"` is for trying recipes quickly (same seed,
    different numerics)."""
    start = time.time()
    torch.manual_seed(seed)
    train_photos = split_photos(0.25, seed=0)[0] + list(EXTRA_IMAGES)  # the benchmarks' split; test photos unseen
    samples = generate(n_scenes, n_photos, train_photos, seed, blur_p)
    pixels = to_pixels([s.image for s in samples])  # [N, 3, 64, 64] uint8, ~12 KB per image
    captions = [s.caption for s in samples]
    unique = sorted(set(captions))
    unique_ids = tokenize(unique)
    lookup = {caption: i for i, caption in enumerate(unique)}
    caption_index = torch.tensor([lookup[c] for c in captions])
    del samples
    log(f"data: {len(captions)} samples, {len(unique)} distinct captions, {time.time() - start:.0f} s")
    model = open_clip.CLIP(**TINY_CONFIG).to(device)
    model.train()
    loss_fn = ClipLoss()
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    cosine = lambda s: 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, steps - warmup)))  # noqa: E731
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / warmup if s < warmup else cosine(s))
    generator = torch.Generator().manual_seed(seed)
    order, cursor, running = torch.randperm(len(captions), generator=generator), 0, []
    evals = held_out()
    for step in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(captions), generator=generator), 0
        idx = order[cursor:cursor + batch_size]
        cursor += batch_size
        ids = unique_ids[caption_index[idx]]
        ids = ids[:, : int((ids > 0).sum(-1).max())].to(device)
        image_features = F.normalize(model.encode_image(normalise(pixels[idx]).to(device)), dim=-1)
        text_features = F.normalize(encode_text(model, ids), dim=-1)
        loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # as open_clip's training loop does
        running.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            msg = f"step {step + 1}/{steps} loss {np.mean(running):.3f} scale {model.logit_scale.exp():.1f}"
            if (step + 1) % (4 * log_every) == 0 or step + 1 == steps:
                msg += " | " + " ".join(f"{k} top1 {retrieval(model, v)['top1']:.3f}" for k, v in evals.items())
                model.train()
            log(f"{msg} ({time.time() - start:.0f} s)")
            running = []
    model.cpu().eval()
    summary = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "blur_p": blur_p,
               "n_scenes": n_scenes, "n_photos": n_photos, "samples": len(captions),
               "train_photos": train_photos, "seconds": round(time.time() - start),
               "retrieval": {k: retrieval(model, v) for k, v in evals.items()}}
    return model, summary


def save(model: open_clip.CLIP, out: Path, summary: dict | None = None) -> None:
    """open_clip_config.json + open_clip_model.safetensors (float16), loadable with `local-dir:`."""
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_CONFIG, "preprocess_cfg": PREPROCESS}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    meta = {"trained_by": "trainer/demo_clip.py", "summary": json.dumps(summary or {})}
    safetensors.torch.save_file(state, str(out / "open_clip_model.safetensors"), metadata=meta)
