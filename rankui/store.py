"""The label store: pairwise labels in SQLite (WAL), images stored once by SHA-256.

An acknowledged label is durable: `add_label` returns only after the transaction is committed with
`synchronous=FULL` in WAL mode, so a crash or kill -9 right after cannot lose it. Images are files
under `images/<2 hex>/<sha256>` written to a temp file and renamed. Undo marks a label as undone
(it stays in the file, with who undid it and when); only its own annotator may undo it.
The store implements the trainer's `PairSource` (`pairs()`, `image_bytes()`).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from trainer.data import Pair

OUTCOMES = {"image_0": 1.0, "image_1": 0.0, "tie": 0.5, "unsure": None}  # -> label_0 = P(image_0 above)
SOURCES = ("correction", "suggestion", "drag")

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,            -- sha256 of the encoded bytes
    name TEXT NOT NULL,             -- the uploaded file's base name, shown as text only
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    pair_id TEXT UNIQUE NOT NULL,
    instruction TEXT NOT NULL,
    image_0 TEXT NOT NULL REFERENCES images(id),
    image_1 TEXT NOT NULL REFERENCES images(id),
    outcome TEXT NOT NULL,          -- image_0 | image_1 | tie | unsure
    label_0 REAL,                   -- P(image_0 ranks above image_1); NULL for unsure
    left_image INTEGER NOT NULL,    -- which image was shown on the left (0 or 1): position-bias control
    annotator TEXT NOT NULL,
    source TEXT NOT NULL,           -- correction | suggestion | drag
    model_version INTEGER NOT NULL,
    score_0 REAL,
    score_1 REAL,
    created_at TEXT NOT NULL,
    undone_at TEXT,
    undone_by TEXT
);
CREATE INDEX IF NOT EXISTS labels_by_annotator ON labels(annotator, undone_at, seq);
CREATE INDEX IF NOT EXISTS labels_by_instruction ON labels(instruction, undone_at);
"""


@dataclass
class Label:
    seq: int
    pair_id: str
    instruction: str
    image_0: str
    image_1: str
    outcome: str
    label_0: float | None
    left_image: int
    annotator: str
    source: str
    model_version: int
    score_0: float | None
    score_1: float | None
    created_at: str
    undone_at: str | None = None
    undone_by: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class LabelStore:
    """Thread-safe SQLite label store under `data_dir`; one connection per thread."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.image_dir = self.data_dir / "images"
        self.image_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / "labels.sqlite"
        self._local = threading.local()
        self._write_lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a committed label survives power loss, not only kill -9
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ----------------------------------------------------------------------------- images
    def image_path(self, image_id: str) -> Path:
        if len(image_id) != 64 or any(c not in "0123456789abcdef" for c in image_id):
            raise KeyError(f"not an image id: {image_id[:80]!r}")
        return self.image_dir / image_id[:2] / image_id

    def add_image(self, data: bytes, name: str, fmt: str, width: int, height: int) -> str:
        """Store encoded image bytes once; return their SHA-256 id."""
        image_id = hashlib.sha256(data).hexdigest()
        path = self.image_path(image_id)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        with self._write_lock:
            self._connect().execute(
                "INSERT OR IGNORE INTO images (id, name, format, width, height, created_at) VALUES (?,?,?,?,?,?)",
                (image_id, Path(name).name[:200], fmt, width, height, _now()))
        return image_id

    def image_bytes(self, content_id: str) -> bytes:
        return self.image_path(content_id).read_bytes()

    def image_info(self, image_id: str) -> dict:
        row = self._connect().execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise KeyError(f"unknown image {image_id[:12]}")
        return dict(row)

    # ----------------------------------------------------------------------------- labels
    def add_label(self, instruction: str, image_0: str, image_1: str, outcome: str, annotator: str,
                  source: str = "correction", model_version: int = 0, score_0: float | None = None,
                  score_1: float | None = None, left_image: int = 0) -> Label:
        """Record one judgement; returns once it is committed to disk."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
        if image_0 == image_1:
            raise ValueError("a pair needs two different images")
        if not annotator:
            raise ValueError("an annotator id is required")
        row = (uuid.uuid4().hex, instruction, image_0, image_1, outcome, OUTCOMES[outcome], int(left_image),
               annotator, source, int(model_version), score_0, score_1, _now())
        with self._write_lock:
            cur = self._connect().execute(
                "INSERT INTO labels (pair_id, instruction, image_0, image_1, outcome, label_0, left_image, "
                "annotator, source, model_version, score_0, score_1, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                row)
            seq = cur.lastrowid
        return Label(seq, *row)

    def undo_last(self, annotator: str) -> Label | None:
        """Undo this annotator's newest label that is not undone yet; None when there is none."""
        with self._write_lock:
            conn = self._connect()
            row = conn.execute("SELECT * FROM labels WHERE annotator = ? AND undone_at IS NULL "
                               "ORDER BY seq DESC LIMIT 1", (annotator,)).fetchone()
            if row is None:
                return None
            when = _now()
            conn.execute("UPDATE labels SET undone_at = ?, undone_by = ? WHERE seq = ?", (when, annotator, row["seq"]))
        return Label(**{**dict(row), "undone_at": when, "undone_by": annotator})

    def labels(self, instruction: str | None = None, include_undone: bool = False) -> list[Label]:
        query, args = "SELECT * FROM labels WHERE 1=1", []
        if not include_undone:
            query += " AND undone_at IS NULL"
        if instruction is not None:
            query += " AND instruction = ?"
            args.append(instruction)
        return [Label(**dict(r)) for r in self._connect().execute(query + " ORDER BY seq", args)]

    def count(self, annotator: str | None = None) -> int:
        query, args = "SELECT COUNT(*) FROM labels WHERE undone_at IS NULL", []
        if annotator is not None:
            query += " AND annotator = ?"
            args.append(annotator)
        return int(self._connect().execute(query, args).fetchone()[0])

    def pairs(self, instruction: str | None = None) -> list[Pair]:
        """Trainable labels (not undone, not "unsure") as the trainer's `Pair` records."""
        return [Pair(lab.instruction, lab.image_0, lab.image_1, lab.label_0, lab.pair_id, lab.annotator,
                     lab.created_at)
                for lab in self.labels(instruction) if lab.label_0 is not None]
