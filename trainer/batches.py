"""Batch formation: RAC's one-caption-per-batch sampling with negatives, plain batches, pair batches.

Batch `i` is a pure function of (seed, i), so resuming, sharding across processes (rank r takes
micro-batches r, r + K, ...) and single-process gradient accumulation all see the same batches.
Batches carry feature-cache keys, not pixels: images are encoded once, before training.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

import torch

from .data import Item, Pair


@dataclass
class Example:
    """An item whose image is in the feature cache under `key`."""

    key: str
    text: str
    target: float | None
    label: int | None
    cname: str
    weight: float


@dataclass
class BatchSpec:
    keys: list[str]  # feature-cache keys of the batch's images
    text: str
    targets: torch.Tensor | None = None  # [N]
    labels: torch.Tensor | None = None  # [N]
    pairs: torch.Tensor | None = None  # [k, 2] indices into keys
    pair_targets: torch.Tensor | None = None  # [k]


def examples_from(items: list[Item], keys: list[str | None]) -> list[Example]:
    """Pair items with their cache keys, dropping the unreadable ones (already reported)."""
    return [Example(k, i.text, i.target, i.label, i.cname or i.text, i.weight) for i, k in zip(items, keys)
            if k is not None]


def _rng(seed: int, index: int) -> random.Random:
    return random.Random(seed * 1_000_003 + index)


class ItemBatches:
    """Batches of items; `sampling="rank"` is RAC's, `"plain"` shuffles within each caption."""

    def __init__(self, examples: list[Example], batch_size: int, sampling: str = "rank",
                 negative_ratio: float = 0.0, seed: int = 0):
        if not examples:
            raise ValueError("No usable training examples (every row was skipped or the source is empty).")
        if sampling not in ("rank", "plain"):
            raise ValueError(f"sampling must be 'rank' or 'plain', got {sampling!r}.")
        if not 0.0 <= negative_ratio < 1.0:
            raise ValueError(f"negative_ratio must be in [0, 1), got {negative_ratio}.")
        self.examples, self.batch_size, self.sampling = examples, batch_size, sampling
        self.negative_ratio, self.seed = negative_ratio, seed
        self.by_cname: dict[str, list[int]] = defaultdict(list)
        for index, example in enumerate(examples):
            self.by_cname[example.cname].append(index)
        self.cnames = sorted(self.by_cname)
        self._epoch_cache: tuple[int, list[list[int]]] | None = None

    def __call__(self, index: int) -> BatchSpec:
        return self._rank(index) if self.sampling == "rank" else self._plain(index)

    def _rank(self, index: int) -> BatchSpec:
        """RAC (METHODS §2.5): one category, positives by weight without replacement, negatives at 0."""
        rng = _rng(self.seed, index)
        cname = rng.choice(self.cnames)
        members = self.by_cname[cname]
        n_pos = min(int(self.batch_size * (1 - self.negative_ratio)), len(members))
        chosen = _weighted_sample(rng, members, [self.examples[i].weight for i in members], n_pos)
        text = self.examples[chosen[0]].text
        targets = [self.examples[i].target for i in chosen]
        labels = [self.examples[i].label for i in chosen]
        others = [i for i in range(len(self.examples)) if self.examples[i].cname != cname] \
            if self.negative_ratio > 0 else []
        for i in (rng.choices(others, k=self.batch_size - n_pos) if others else []):
            chosen.append(i)
            targets.append(0.0)  # a negative: zero of the batch's category
            labels.append(0 if labels[0] is not None else None)
        return _spec([self.examples[i].key for i in chosen], text, targets, labels)

    def _epoch(self, epoch: int) -> list[list[int]]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            rng = _rng(self.seed, -1 - epoch)
            batches = []
            for cname in self.cnames:
                members = list(self.by_cname[cname])
                rng.shuffle(members)
                batches += [members[s:s + self.batch_size] for s in range(0, len(members), self.batch_size)]
            rng.shuffle(batches)
            self._epoch_cache = (epoch, batches)
        return self._epoch_cache[1]

    def _plain(self, index: int) -> BatchSpec:
        per_epoch = len(self._epoch(0))
        chosen = self._epoch(index // per_epoch)[index % per_epoch]
        ex = [self.examples[i] for i in chosen]
        return _spec([e.key for e in ex], ex[0].text, [e.target for e in ex], [e.label for e in ex])


class PairBatches:
    """Batches of labelled pairs under one instruction (chosen in proportion to its pairs)."""

    def __init__(self, pairs: list[Pair], batch_size: int, seed: int = 0):
        if not pairs:
            raise ValueError("No pairwise labels to train on.")
        self.batch_size, self.seed = batch_size, seed
        self.by_text: dict[str, list[Pair]] = defaultdict(list)
        for pair in pairs:
            self.by_text[pair.instruction].append(pair)
        self.texts = sorted(self.by_text)
        self.weights = [len(self.by_text[t]) for t in self.texts]

    def __call__(self, index: int) -> BatchSpec:
        rng = _rng(self.seed, index)
        text = rng.choices(self.texts, weights=self.weights)[0]
        pool = self.by_text[text]
        chosen = rng.sample(pool, min(self.batch_size, len(pool)))
        return pair_spec(chosen, text)


def pair_spec(pairs: list[Pair], text: str) -> BatchSpec:
    """The union of the pairs' images, and the pairs as indices into it."""
    keys: list[str] = []
    where: dict[str, int] = {}
    index = []
    for pair in pairs:
        for key in (pair.image_0, pair.image_1):
            if key not in where:
                where[key] = len(keys)
                keys.append(key)
        index.append((where[pair.image_0], where[pair.image_1]))
    return BatchSpec(keys, text, pairs=torch.tensor(index, dtype=torch.long).reshape(-1, 2),
                     pair_targets=torch.tensor([p.label_0 for p in pairs], dtype=torch.float32))


def _spec(keys, text, targets, labels) -> BatchSpec:
    t = torch.tensor(targets, dtype=torch.float32) if all(v is not None for v in targets) else None
    lab = torch.tensor(labels, dtype=torch.long) if all(v is not None for v in labels) else None
    return BatchSpec(keys, text, targets=t, labels=lab)


def _weighted_sample(rng: random.Random, population: list[int], weights: list[float], k: int) -> list[int]:
    """k distinct elements, each draw proportional to weight (as numpy's choice without replacement)."""
    pool, w, out = list(population), list(weights), []
    for _ in range(k):
        i = rng.choices(range(len(pool)), weights=w)[0]
        out.append(pool.pop(i))
        w.pop(i)
    return out
