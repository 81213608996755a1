"""The app's background trainer: fine-tunes the current method on stored pairwise labels.

A thread owns training. A round starts when enough new labels arrived or on `request_round()`. It
trains a *copy* of the served method on the labels outside a stable held-out share, measures held-out
pairwise accuracy for both, and publishes the copy as a new version only if accuracy does not drop.
Publishing swaps one reference under a lock, so `current()` / `score()` never wait for a round. Any
exception inside a round is caught: the status shows it, the previous version keeps serving, and the
label store is only ever read. For ZeroGPU, `burst_fn` runs the training part as a short bounded call
whose arguments and result are plain CPU tensors (see `train_burst`).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from .backbone import Backbone, ImageFeatures
from .batches import PairBatches
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .data import Pair, PairSource, is_held_out
from .features import FeatureCache
from .fit import Prepared, evaluate, prepare
from .method import RankingMethod
from .registry import create_method
from .train import Trainer, resolve_device

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    min_new_labels: int = 10  # start a round once this many labels arrived since the last one
    holdout_fraction: float = 0.2  # stable share of labels never trained on, to decide publishing
    steps: int = 100  # optimizer steps per round
    batch_size: int = 32  # pairs per batch
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 5
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # cuda when present, else cpu
    poll_seconds: float = 2.0  # how often the thread looks for new labels
    checkpoint_dir: str = ""  # where published versions are written (empty: not written)


@dataclass
class WorkerStatus:
    state: str = "idle"  # idle | training | error | stopped
    version: int = 0  # published model version (0: the initial model)
    labels_used: int = 0  # training labels of the published version
    held_out_labels: int = 0
    held_out_accuracy: float | None = None  # of the published version
    curve: list[dict] = field(default_factory=list)  # per round: labels, held-out accuracy, published
    progress: float = 0.0  # of the current round, 0..1
    step: int = 0
    steps: int = 0
    last_error: str | None = None
    rounds: int = 0
    device: str = "cpu"


@dataclass
class BurstSpec:
    """Everything a training burst needs, as picklable CPU data (ZeroGPU workers are forked)."""

    method: str
    method_config: dict
    state: dict[str, torch.Tensor]  # starting weights
    features: dict[str, tuple[torch.Tensor, torch.Tensor]]  # key -> (tokens [P, D], pooled [E]) half
    pairs: list[Pair]
    train: TrainConfig


class FeatureTable:
    """`FeatureCache.get` over a plain dict of features (what a burst receives)."""

    def __init__(self, features: dict[str, tuple[torch.Tensor, torch.Tensor]]):
        self.features = features

    def get(self, keys: list[str], device="cpu") -> ImageFeatures:
        tokens = torch.stack([self.features[k][0] for k in keys]).to(device, torch.float32)
        pooled = torch.stack([self.features[k][1] for k in keys]).to(device, torch.float32)
        return ImageFeatures(tokens, pooled)


def train_burst(backbone: Backbone, spec: BurstSpec, device: str | torch.device = "cpu",
                callbacks: list[Callable] = (), stop: Callable[[], bool] | None = None) -> dict:
    """Train a copy of the method on the spec's pairs; returns {"state": CPU weights, "logs": [...]}.

    The same function serves in-process rounds and ZeroGPU bursts (wrap it in `spaces.GPU`).
    """
    device = torch.device(device)
    torch.manual_seed(spec.train.seed)
    method = create_method(spec.method, backbone, **spec.method_config)
    method.load_state_dict(spec.state)
    method.to(device)
    trainer = Trainer(method, FeatureTable(spec.features), PairBatches(spec.pairs, spec.train.batch_size,
                                                                        spec.train.seed), spec.train, device)
    logs: list[dict] = []
    trainer.add_callback("on_batch_end", lambda tr, l: logs.append({"step": tr.step, **l}))
    for fn in callbacks:
        trainer.add_callback("on_batch_end", fn)
    trainer.run(stop=stop)
    return {"state": {k: v.detach().to("cpu") for k, v in method.state_dict().items()}, "logs": logs,
            "steps": trainer.step}


class _Stopped(Exception):
    pass


class TrainingWorker:
    """Owns training of the served method on a pair source; thread-safe reads of the current model.

    Args:
        source: the label store (read only).
        backbone: the shared frozen backbone.
        method: the model serving now (version 0); a copy is trained each round.
        config: round triggers and hyper-parameters.
        cache: the feature cache shared with ranking (one is made if omitted).
        burst_fn: optional `fn(spec) -> result` replacing in-process training (ZeroGPU bursts);
            defaults to `train_burst` on this worker's device.
    """

    def __init__(self, source: PairSource, backbone: Backbone, method: RankingMethod,
                 config: WorkerConfig | None = None, cache: FeatureCache | None = None,
                 burst_fn: Callable[[BurstSpec], dict] | None = None):
        self.source, self.backbone, self.config = source, backbone, config or WorkerConfig()
        self.device = resolve_device(self.config.device)
        self.cache = cache or FeatureCache(backbone)
        self.burst_fn = burst_fn
        self._method = method.eval()
        self._lock = threading.Lock()  # guards _method, _version and status; held only for pointer swaps
        self._status = WorkerStatus(device=str(self.device))
        self._wake, self._stop = threading.Event(), threading.Event()
        self._requested = False
        self._labels_at_last_round = 0
        self._thread: threading.Thread | None = None
        self._rounds_done = threading.Condition()
        self.callbacks: list[Callable] = []  # on_batch_end(trainer, logs), e.g. for the page

    # ------------------------------------------------------------------------- serving side
    def current(self) -> tuple[int, RankingMethod]:
        """The published (version, method); never waits for a training round."""
        with self._lock:
            return self._status.version, self._method

    @torch.no_grad()
    def score(self, images: ImageFeatures, text: str = "", classes: list[str] | None = None) -> torch.Tensor:
        _, method = self.current()
        device = next(method.parameters()).device
        return method.score(images.to(device), text, classes).float().cpu()

    def status(self) -> WorkerStatus:
        with self._lock:
            return replace(self._status, curve=[dict(c) for c in self._status.curve])

    def _set(self, **changes) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._status, key, value)

    # ------------------------------------------------------------------------------- thread
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._set(state="idle")
        self._thread = threading.Thread(target=self._loop, name="rankui-trainer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to finish (a running round is abandoned unpublished) and join it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("Training worker did not stop within %.0f s.", timeout)
        self._set(state="stopped")

    def request_round(self) -> None:
        """Start a round as soon as the thread is free, however few new labels there are."""
        self._requested = True
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                count = len(self.source.pairs())
            except Exception as err:  # a store hiccup must not kill the thread
                self._set(last_error=f"reading labels: {type(err).__name__}: {err}")
                count = self._labels_at_last_round
            due = count - self._labels_at_last_round >= self.config.min_new_labels
            if (self._requested or due) and count:
                self._requested = False
                self.run_round()
            self._wake.wait(self.config.poll_seconds)
            self._wake.clear()

    # ------------------------------------------------------------------------------- rounds
    def run_round(self) -> bool:
        """One round, synchronously; returns whether a new version was published. Never raises."""
        self._set(state="training", progress=0.0, step=0, steps=self.config.steps)
        try:
            published = self._round()
            self._set(state="idle", last_error=None)
            return published
        except _Stopped:
            self._set(state="stopped" if self._stop.is_set() else "idle")
            return False
        except Exception as err:
            log.error("Training round failed; version %d keeps serving.\n%s", self._status.version,
                      traceback.format_exc())
            self._set(state="error", last_error=f"{type(err).__name__}: {err}")
            return False
        finally:
            with self._lock:
                self._status.rounds += 1
            with self._rounds_done:
                self._rounds_done.notify_all()

    def wait_for_rounds(self, count: int, timeout: float | None = None) -> bool:
        """Block until `count` rounds have finished (for callers that need a result, e.g. tests)."""
        with self._rounds_done:
            return self._rounds_done.wait_for(lambda: self.status().rounds >= count, timeout)

    def _round(self) -> bool:
        pairs = self.source.pairs()
        self._labels_at_last_round = len(pairs)
        fraction = self.config.holdout_fraction
        train_pairs = [p for p in pairs if not is_held_out(p.pair_id, fraction)]
        held_pairs = [p for p in pairs if is_held_out(p.pair_id, fraction)]
        if not train_pairs:
            raise ValueError(f"No training labels yet ({len(pairs)} labels, all held out).")
        train = prepare(train_pairs, self.cache, pair_source=self.source)
        held = prepare(held_pairs, self.cache, pair_source=self.source) if held_pairs else Prepared()
        version, served = self.current()
        spec = self._spec(served, train.pairs)
        if self.burst_fn is not None:
            result = self.burst_fn(spec)
        else:
            result = train_burst(self.backbone, spec, self.device, [self._progress, *self.callbacks],
                                 stop=self._stop.is_set)
        if self._stop.is_set():
            raise _Stopped()
        candidate = create_method(spec.method, self.backbone, **spec.method_config)
        candidate.load_state_dict(result["state"])
        candidate.to(next(served.parameters()).device).eval()
        old = self._accuracy(served, held)
        new = self._accuracy(candidate, held)
        publish = old is None or new >= old
        point = {"round": self._status.rounds + 1, "labels": len(train.pairs), "held_out": len(held.pairs),
                 "held_out_accuracy": new, "previous_accuracy": old, "published": publish,
                 "loss": result["logs"][-1]["loss"] if result["logs"] else None, "time": time.time()}
        if publish:
            self._publish(candidate, version + 1, len(train.pairs), len(held.pairs), new)
        with self._lock:
            self._status.curve.append(point)
            if not publish:
                self._status.held_out_accuracy = old
        return publish

    def _spec(self, served: RankingMethod, pairs: list[Pair]) -> BurstSpec:
        keys = sorted({k for p in pairs for k in (p.image_0, p.image_1)})
        feats = self.cache.get(keys)
        features = {k: (feats.tokens[i].half(), feats.pooled[i].half()) for i, k in enumerate(keys)}
        c = self.config
        train = TrainConfig(steps=c.steps, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
                            warmup_steps=c.warmup_steps, grad_clip=c.grad_clip, seed=c.seed + self._status.rounds,
                            progress=False, device=str(self.device))
        state = {k: v.detach().to("cpu").clone() for k, v in served.state_dict().items()}
        return BurstSpec(served.name, asdict(served.config) if hasattr(served, "config") else {}, state,
                         features, pairs, train)

    def _progress(self, trainer: Trainer, logs: dict) -> None:
        if self._stop.is_set():
            raise _Stopped()
        self._set(step=trainer.step, progress=trainer.step / max(1, trainer.config.steps))

    def _accuracy(self, method: RankingMethod, held: Prepared) -> float | None:
        if not held.pairs:
            return None
        value = evaluate(method, held, self.cache, device=next(method.parameters()).device)["pair_label_accuracy"]
        return None if value != value else value  # NaN (only ties held out) -> no measurement

    def _publish(self, method: RankingMethod, version: int, labels: int, held: int, accuracy) -> None:
        if self.config.checkpoint_dir:  # written before the swap: a served version always has a file
            save_checkpoint(Path(self.config.checkpoint_dir) / f"v{version:04d}.safetensors", method,
                            {"version": version, "labels": labels, "held_out_labels": held,
                             "held_out_accuracy": accuracy})
        with self._lock:
            self._method = method
            self._status.version = version
            self._status.labels_used, self._status.held_out_labels = labels, held
            self._status.held_out_accuracy = accuracy
            self._status.progress = 1.0


def latest_version(checkpoint_dir: str | Path) -> Path | None:
    """The newest published version file, for restarting from the newest good model."""
    files = sorted(Path(checkpoint_dir).glob("v[0-9][0-9][0-9][0-9].safetensors"))
    return files[-1] if files else None
