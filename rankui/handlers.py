"""Event handlers: plain functions of an `AppContext`, callable from tests without a server.

Each returns what the page shows. Bad input never raises into Gradio: it comes back as a message
(`gr.Warning`-free, so the API gets it too) and the session keeps its previous state. Text from
people (instructions, class names, file names) is only ever shown as text.
"""

from __future__ import annotations

import base64
import io
import re
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from .engine import Engine, Ranking
from .export import ExportError, export_folder, export_parquet, push_to_hub
from .images import ImageLimits, read_images
from .overlays import overlay, pair_overlays
from .pairs import suggest_pair
from .store import LabelStore

MAX_INSTRUCTION = 300  # characters; CLIP reads 77 tokens anyway
OUTCOMES = {"left": "left", "right": "right", "tie": "tie", "unsure": "unsure",
            "1": "left", "2": "right", "0": "tie"}


@dataclass
class AppContext:
    engine: Engine
    store: LabelStore
    limits: ImageLimits
    worker: object | None = None  # the background trainer (status(), request_round())
    export_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rankui-export-")))
    hub_repo: str = ""
    mirror: object | None = None  # the label mirror to a Hub dataset repo, when on
    _export_lock: threading.Lock = field(default_factory=threading.Lock)


class UserError(ValueError):
    """Bad input: the message is shown to the person as is."""


# ------------------------------------------------------------------------------------ helpers
def clean_instruction(text: str | None) -> str:
    text = " ".join(str(text or "").split())
    if not text:
        raise UserError("Type an ordering instruction, e.g. 'rank by the number of apples'.")
    if len(text) > MAX_INSTRUCTION:
        raise UserError(f"The instruction is {len(text)} characters; keep it under {MAX_INSTRUCTION} "
                        "(CLIP reads at most 77 tokens).")
    return text


def parse_classes(text: str | None) -> list[str]:
    return [c.strip() for c in re.split(r"[,\n]", str(text or "")) if c.strip()]


def file_paths(files) -> list:
    out = []
    for f in files or []:
        if isinstance(f, dict):
            f = f.get("path") or f.get("name")
        out.append(getattr(f, "name", f))
    return out


def thumbnail_url(image: Image.Image, side: int = 96) -> str:
    thumb = image.copy()
    thumb.thumbnail((side, side))
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def display_size(image: Image.Image, side: int = 384) -> Image.Image:
    """Small images are upsampled for display, so a heatmap is readable."""
    scale = side / max(image.size)
    if scale <= 1:
        return image
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)


def session_view(ctx: AppContext, state: dict) -> tuple[list, pd.DataFrame, list]:
    """Gallery items, score table and sortable strip for the ranking in `state`."""
    if not state.get("ids"):
        return [], pd.DataFrame({"rank": [], "score": [], "name": []}), []
    ids, scores, order = state["ids"], state["scores"], state["order"]
    gallery, rows, strip = [], [], []
    for rank, i in enumerate(order, start=1):
        name = ctx.store.image_info(ids[i])["name"]
        gallery.append((ctx.engine.image(ids[i]), f"#{rank} · {scores[i]:.3f} · {name}"))
        rows.append({"rank": rank, "score": round(scores[i], 4), "name": name})
        strip.append({"id": ids[i], "rank": rank, "url": thumbnail_url(ctx.engine.image(ids[i]))})
    return gallery, pd.DataFrame(rows), strip


# ------------------------------------------------------------------------------------ ranking
def rank(ctx: AppContext, files, instruction: str, method: str, classes_text: str, state: dict
         ) -> tuple[dict, str]:
    """Read, store and encode the images, then rank them; returns (new state, message)."""
    instruction = clean_instruction(instruction)
    if method not in ctx.engine.methods():
        raise UserError(f"Unknown method '{method}'. Choose one of: {', '.join(ctx.engine.methods())}.")
    classes = parse_classes(classes_text)
    if ctx.engine.needs_classes(method) and len(classes) < 2:
        raise UserError(f"The '{method}' method ranks over ordered class names: give at least two, "
                        "lowest first, separated by commas (e.g. 'child, teenager, adult').")
    paths = file_paths(files)
    batch = read_images(paths, ctx.limits)
    if len(batch.images) < 2:
        problems = ("\n" + "\n".join(batch.problems)) if batch.problems else ""
        raise UserError(f"Add at least two images to rank ({len(batch.images)} usable).{problems}\n"
                        f"Accepted: {ctx.limits.describe()}.")
    ids = ctx.engine.add_images(batch)
    ranking = ctx.engine.rank(ids, instruction, method, classes)
    new_state = ranking_state(ranking, instruction, classes)
    notes = ("\n" + "\n".join(batch.problems)) if batch.problems else ""
    ties = len(ranking.scores) - len(set(np.round(ranking.scores, 6)))
    tie_note = f" {ties} tied score(s)." if ties else ""
    return new_state, (f"Ranked {len(ids)} images by '{instruction}' with {method} "
                       f"(model version {ranking.version}).{tie_note}{notes}")


def ranking_state(ranking: Ranking, instruction: str, classes: list[str]) -> dict:
    return {"ids": ranking.ids, "scores": ranking.scores, "order": ranking.order, "instruction": instruction,
            "method": ranking.method, "classes": classes, "version": ranking.version, "pair": None}


def rerank(ctx: AppContext, state: dict) -> dict:
    """Rank the session's images again (new model version), reusing cached tokens."""
    if not state.get("ids"):
        return state
    ranking = ctx.engine.rank(state["ids"], state["instruction"], state["method"], state["classes"])
    return {**state, **ranking_state(ranking, state["instruction"], state["classes"]), "pair": state.get("pair")}


def rank_of(state: dict, image_id: str) -> int:
    """The 1-based rank at which an image is shown now."""
    return state["order"].index(state["ids"].index(image_id)) + 1


def _require_ranking(state: dict) -> None:
    if not state or not state.get("ids"):
        raise UserError("Rank some images first.")


def _rank_to_index(state: dict, rank_number) -> int:
    try:
        rank_number = int(rank_number)
    except (TypeError, ValueError):
        raise UserError(f"'{rank_number}' is not a rank number.") from None
    n = len(state["order"])
    if not 1 <= rank_number <= n:
        raise UserError(f"Rank {rank_number} is out of range: choose 1 to {n}.")
    return state["order"][rank_number - 1]


# ------------------------------------------------------------------------------------ attention
def attention(ctx: AppContext, state: dict, rank_number, word: str) -> tuple[Image.Image, str]:
    """Where the instruction's words land on the image at this rank, as a heatmap overlay."""
    _require_ranking(state)
    if state["method"] != "rac":
        raise UserError("Attention maps come from the ranking-aware adapter: rank with the 'rac' method.")
    index = _rank_to_index(state, rank_number)
    words, grids = ctx.engine.word_maps(state["ids"], state["instruction"])
    inner = list(range(1, len(words) - 1)) or list(range(len(words)))  # the words, without SOT/EOT
    if word in (None, "", "all words"):
        grid, what = grids[index, inner].sum(0), "all words"
    elif word in words:
        grid, what = grids[index, words.index(word)], f"'{word}'"
    else:
        raise UserError(f"'{word}' is not a token of the instruction; choose one of: {', '.join(words[1:-1])}.")
    return overlay(display_size(ctx.engine.image(state["ids"][index])), grid), (
        f"Rank #{int(rank_number)}: cross-modal attention of the image's patches to {what}.")


def pair_attention(ctx: AppContext, state: dict, first_rank, second_rank, head: str, query: str
                   ) -> tuple[Image.Image, Image.Image, str]:
    """The relational ranking-aware attention of a pair, both maps on one colour scale."""
    _require_ranking(state)
    if state["method"] != "rac":
        raise UserError("Pair maps come from the ranking-aware adapter: rank with the 'rac' method.")
    a, b = _rank_to_index(state, first_rank), _rank_to_index(state, second_rank)
    if a == b:
        raise UserError("Choose two different ranks.")
    maps_a, maps_b, logit = ctx.engine.pair_maps(state["ids"], state["instruction"], a, b)
    grid_a, grid_b = _select(maps_a, head, query), _select(maps_b, head, query)
    left, right, scale = pair_overlays(display_size(ctx.engine.image(state["ids"][a])),
                                       display_size(ctx.engine.image(state["ids"][b])), grid_a, grid_b)
    share = float(maps_a.sum() / (maps_a.sum() + maps_b.sum()))
    prob = 1 / (1 + np.exp(-logit))
    return left, right, (f"#{int(first_rank)} vs #{int(second_rank)}: P(#{int(first_rank)} above) = {prob:.2f} "
                         f"from the pair head; {share:.0%} of the relational attention is on #{int(first_rank)}. "
                         f"Shared scale {scale[0]:.4f} to {scale[1]:.4f} (head {head}, query {query}).")


def _select(maps: np.ndarray, head: str, query: str) -> np.ndarray:
    """[H, Q, gh, gw] -> [gh, gw]: one head / query, or the mean."""
    def pick(arr, which, axis, size, what):
        if str(which) in ("mean", "", "None"):
            return arr.mean(axis=axis)
        try:
            k = int(which)
        except ValueError:
            raise UserError(f"{what} must be 'mean' or a number from 0 to {size - 1}.") from None
        if not 0 <= k < size:
            raise UserError(f"{what} must be 'mean' or a number from 0 to {size - 1}.")
        return np.take(arr, k, axis=axis)
    heads, queries = maps.shape[:2]
    return pick(pick(maps, query, 1, queries, "Query"), head, 0, heads, "Head")


# ------------------------------------------------------------------------------------ labels
def label(ctx: AppContext, state: dict, left_rank, right_rank, outcome: str, annotator: str,
          source: str = "correction", left_image: int | None = None) -> tuple[dict, str]:
    """Record which of two images ranks higher (or a tie, or can't tell)."""
    _require_ranking(state)
    outcome = OUTCOMES.get(str(outcome).strip().lower())
    if outcome is None:
        raise UserError("The answer must be left, right, tie or unsure (keys 1, 2, 0).")
    annotator = (annotator or "").strip()
    if not annotator:
        raise UserError("No annotator id: reload the page to get one.")
    left, right = _rank_to_index(state, left_rank), _rank_to_index(state, right_rank)
    if left == right:
        raise UserError("Choose two different images.")
    scores, ids = state["scores"], state["ids"]
    # image_0 is the image the model ranks higher; left_image records where image_0 was shown.
    first, second = (left, right) if scores[left] >= scores[right] else (right, left)
    placed = left_image if left_image is not None else (0 if first == left else 1)
    shown_winner = {"left": left, "right": right}.get(outcome)
    stored = "tie" if outcome == "tie" else "unsure" if outcome == "unsure" else \
        ("image_0" if shown_winner == first else "image_1")
    record = ctx.store.add_label(state["instruction"], ids[first], ids[second], stored, annotator, source,
                                 state.get("version", 0), scores[first], scores[second], placed)
    total = ctx.store.count(annotator)
    return {**state, "pair": None}, f"Saved: {_describe(stored)} (label {record.seq}; {total} by you)."


def _describe(outcome: str) -> str:
    return {"image_0": "the model's order confirmed", "image_1": "the model's order corrected",
            "tie": "a tie", "unsure": "can't tell"}[outcome]


def undo(ctx: AppContext, annotator: str) -> str:
    annotator = (annotator or "").strip()
    if not annotator:
        raise UserError("No annotator id: reload the page to get one.")
    undone = ctx.store.undo_last(annotator)
    if undone is None:
        return "Nothing to undo: you have no labels left."
    return f"Undid your label {undone.seq} ({_describe(undone.outcome)})."


def suggest(ctx: AppContext, state: dict, annotator: str, rng: np.random.Generator | None = None
            ) -> tuple[dict, str]:
    """The next most informative pair for this annotator, placed left/right at random."""
    _require_ranking(state)
    position = {image_id: k for k, image_id in enumerate(state["ids"])}
    comparisons, asked = [], set()
    for lab in ctx.store.labels(state["instruction"]):
        if lab.image_0 in position and lab.image_1 in position:
            i, j = position[lab.image_0], position[lab.image_1]
            if lab.label_0 is not None:
                comparisons.append((i, j, lab.label_0))
            if lab.annotator == (annotator or "").strip():
                asked.add(frozenset((i, j)))
    pick = suggest_pair(np.array(state["scores"]), comparisons, asked, rng)
    if pick is None:
        return {**state, "pair": None}, "No informative pair left for you: every pair has your label."
    rank_of = {index: r for r, index in enumerate(state["order"], start=1)}
    pair = {"left": rank_of[pick.left], "right": rank_of[pick.right], "swapped": pick.swapped,
            "left_image": 1 if pick.swapped else 0, "gain": pick.gain}
    return {**state, "pair": pair}, (f"Which ranks higher for '{state['instruction']}': #{pair['left']} (left) or "
                                     f"#{pair['right']} (right)? Expected information {pick.gain:.2f} bits.")


def drag(ctx: AppContext, state: dict, new_order_ids: list[str], annotator: str, limit: int = 10) -> tuple[dict, str]:
    """A drag in the ranking strip: the moved image is labelled against each image it passed."""
    _require_ranking(state)
    current = [state["ids"][i] for i in state["order"]]
    if sorted(new_order_ids or []) != sorted(current):
        raise UserError("The dragged order does not match the ranked images; rank again.")
    if list(new_order_ids) == current:
        return state, "Order unchanged."
    # The moved image: the one whose removal makes the two orders agree.
    moved = next(x for x in current if [y for y in current if y != x] == [y for y in new_order_ids if y != x])
    old, new = current.index(moved), list(new_order_ids).index(moved)
    passed = current[new:old] if new < old else current[old + 1:new + 1]
    rank_of = {image_id: r for r, image_id in enumerate(current, start=1)}
    saved = 0
    for other in passed[:limit]:
        winner_left = new < old  # moved up: it ranks above the images it passed
        state, _ = label(ctx, state, rank_of[moved], rank_of[other], "left" if winner_left else "right",
                         annotator, source="drag")
        saved += 1
    position = {image_id: k for k, image_id in enumerate(state["ids"])}
    state = {**state, "order": [position[image_id] for image_id in new_order_ids]}  # the order as arranged
    return state, f"Saved {saved} pairwise label(s) from the drag ({'up' if new < old else 'down'} {len(passed)})."


# ------------------------------------------------------------------------------------ trainer, export
def train_status(ctx: AppContext) -> dict:
    """The trainer's live status (what the page polls) plus the label count."""
    if ctx.worker is None:
        return {"state": "off", "version": 0, "labels_used": 0, "held_out_accuracy": None, "curve": [],
                "progress": 0.0, "last_error": None, "labels_total": ctx.store.count()}
    return {**asdict(ctx.worker.status()), "labels_total": ctx.store.count()}


def train_now(ctx: AppContext) -> str:
    if ctx.worker is None:
        return "No trainer is running in this app."
    if ctx.store.count() == 0:
        raise UserError("There are no labels to train on yet: label a few pairs first.")
    ctx.worker.request_round()
    return "Training round requested; the status shows its progress."


def export(ctx: AppContext, kind: str, repo_id: str = "") -> tuple[str | None, str]:
    """Export the labels; returns (a file to download or None, message)."""
    with ctx._export_lock:
        try:
            if kind == "parquet":
                paths = export_parquet(ctx.store, ctx.export_dir)
                return str(paths["pairs"]), (f"Exported {ctx.store.count()} labels to pairs.parquet "
                                             "(images embedded); rankings.parquet beside it.")
            if kind == "folder":
                paths = export_folder(ctx.store, ctx.export_dir / "dataset")
                return None, f"Saved with datasets.save_to_disk: {paths['pairs'].name}/ and {paths['rankings'].name}/."
            if kind == "hub":
                url = push_to_hub(ctx.store, repo_id or ctx.hub_repo)
                return None, f"Pushed (private) to {url}."
        except ExportError as err:
            raise UserError(str(err)) from None
    raise UserError("Export as 'parquet', 'folder' or 'hub'.")
