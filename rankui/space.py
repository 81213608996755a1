"""Hugging Face Space glue: mirroring labels to a private dataset repo, ZeroGPU training bursts.

Spaces no longer have a persistent disk, so labels can be mirrored to a private dataset repo with
`huggingface_hub.CommitScheduler`: before each scheduled commit the SQLite file is copied with
SQLite's online backup API (a consistent snapshot, even while annotators write) into the mirrored
folder, with the content-addressed images beside it. On ZeroGPU (`SPACES_ZERO_GPU` set and the
`spaces` package present) training bursts run under `@spaces.GPU`; elsewhere they run as they are.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Callable

from huggingface_hub import CommitScheduler

from .store import LabelStore

log = logging.getLogger("rankui")


class LabelMirror(CommitScheduler):
    """Commits a consistent snapshot of the label store to a private dataset repo every few minutes."""

    def __init__(self, store: LabelStore, repo_id: str, token: str, every_minutes: float = 5.0):
        self.store = store
        self.snapshot_dir = store.data_dir / "mirror"
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(repo_id=repo_id, repo_type="dataset", folder_path=self.snapshot_dir, every=every_minutes,
                         private=True, token=token)

    def snapshot(self) -> Path:
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        target = self.snapshot_dir / "labels.sqlite"
        tmp = target.with_suffix(".tmp")
        source = sqlite3.connect(self.store.path)
        try:
            dest = sqlite3.connect(tmp)
            with dest:
                source.backup(dest)
            dest.close()
        finally:
            source.close()
        os.replace(tmp, target)
        images = self.snapshot_dir / "images"
        for path in self.store.image_dir.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp"):
                copy = images / path.relative_to(self.store.image_dir)
                if not copy.exists():
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, copy)
        return target

    def push_to_hub(self):
        self.snapshot()
        return super().push_to_hub()


def start_label_mirror(store: LabelStore, repo_id: str, token: str | None = None) -> LabelMirror | None:
    """Start mirroring when a repo is configured; say in one line why not when it cannot start."""
    token = token or os.environ.get("HF_TOKEN")
    if not repo_id:
        return None
    if not token:
        log.warning("Label mirroring to %s is off: no HF_TOKEN is set.", repo_id)
        return None
    try:
        return LabelMirror(store, repo_id, token)
    except Exception as err:  # noqa: BLE001 - the app runs without the mirror; the token is never printed
        log.warning("Label mirroring to %s is off: the Hub cannot be reached (%s).", repo_id, type(err).__name__)
        return None


def gpu_burst(fn: Callable, duration: int = 60) -> Callable:
    """Wrap a training burst for ZeroGPU when running there; a no-op elsewhere."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return fn
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the 'spaces' package is missing; training runs on CPU.")
        return fn
    return spaces.GPU(duration=duration)(fn)
