"""How the RAC adapter scales with the number of images, against the original all-pairs formulation.

On cached ViT-B-32-shaped tokens (P=49 tokens, d=512): scores for N images (O(N)), and the pair
branch for the N-1 adjacent pairs of a ranking computed for those pairs only, against the dense
formulation of the original (all N² ordered pairs materialised, then the adjacent ones read off).
Each measurement runs in a fresh process so its peak resident memory is its own. Dense runs whose
estimated memory exceeds --budget-gb are not attempted.

    python bench/adapter_scaling.py [--sizes 16 64 256 1024] [--budget-gb 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

P, D, T, HEADS, QUERIES = 49, 512, 77, 8, 16


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _measure(case: str, n: int, threads: int, queue) -> None:
    import torch

    from trainer.layers import adjacent_pairs, rank_attention_dense
    from trainer.rac import RankingAwareAdapter

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    adapter = RankingAwareAdapter.from_config(None, mode="fixed", d_model=D, text_dim=D, score_chunk=256).eval()
    tokens = torch.randn(n, P, D)
    text, mask = torch.randn(1, T, D), torch.ones(1, T, dtype=torch.bool)
    with torch.no_grad():
        fused = adapter.fuse(tokens, text, mask)[0] if case != "scores" else None
    order = torch.randperm(n)
    pairs = adjacent_pairs(order)

    def run():
        with torch.no_grad():
            if case == "scores":
                return torch.cat([adapter.scores_from_fused(adapter.fuse(part, text, mask)[0])
                                  for part in tokens.split(adapter.config.score_chunk)])
            if case == "pairs_sparse":
                return adapter.pair_logits_from_fused(fused, pairs)[0]
            out, _ = rank_attention_dense(adapter.reg_token_pooler, adapter.reg_tokens, fused)
            logits = adapter.pair_regressor(out.sum(1))[:, 0]  # all N² pairs, i*N + j
            return logits[pairs[:, 0] * n + pairs[:, 1]]

    base = _peak_rss_mb()
    times = []
    for _ in range(3 if n <= 256 else 1):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    queue.put({"case": case, "n": n, "seconds": statistics.median(times), "peak_mb": _peak_rss_mb() - base,
               "checksum": float(result.double().sum())})


def measure(case: str, n: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(case, n, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def dense_estimate_gb(n: int) -> float:
    """Keys of both images, attention and values of all N² pairs, float32, as the original holds them."""
    pairs = n * n
    per_pair = HEADS * (2 * P) * (D // HEADS) * 3 + HEADS * QUERIES * 2 * P * 2 + QUERIES * D * 2
    return pairs * per_pair * 4 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--budget-gb", type=float, default=4.0, help="memory the dense formulation may use")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"RAC adapter scaling, fixed mode, tokens [N, {P}, {D}], torch threads {args.threads}")
    print(f"{'N':>6} {'scores s':>9} {'scores MB':>10} {'pairs(k=N-1) s':>15} {'MB':>7} "
          f"{'dense N² s':>11} {'MB':>7} {'time ratio':>11} {'mem ratio':>10}")
    for n in args.sizes:
        scores = measure("scores", n, args.threads)
        sparse = measure("pairs_sparse", n, args.threads)
        estimate = dense_estimate_gb(n)
        if estimate <= args.budget_gb:
            dense = measure("pairs_dense", n, args.threads)
            assert abs(dense["checksum"] - sparse["checksum"]) < 1e-3 * max(1.0, abs(dense["checksum"]))
            dense_cols = (f"{dense['seconds']:11.4f} {dense['peak_mb']:7.0f} "
                          f"{dense['seconds'] / sparse['seconds']:10.1f}x "
                          f"{max(dense['peak_mb'], 1) / max(sparse['peak_mb'], 1):9.1f}x")
        else:
            dense_cols = f"{'skipped: est. ' + format(estimate, '.0f') + ' GB > budget':>42}"
        print(f"{n:6d} {scores['seconds']:9.3f} {scores['peak_mb']:10.0f} {sparse['seconds']:15.4f} "
              f"{sparse['peak_mb']:7.0f} {dense_cols}")


if __name__ == "__main__":
    main()
