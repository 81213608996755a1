"""`torchrun --nproc_per_node=2 -m trainer fit` (DDP over gloo on CPU) equals one process with the same
global batch: two micro-batches per step, accumulated, with the same per-micro-batch dropout seeds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from trainer.config import apply_overrides, load_config
from trainer.fit import fit

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests/data"
CONFIG = REPO / "trainer/configs/tiny-test.yaml"


def test_two_gloo_processes_match_one_process(tmp_path):
    flags = {"train.steps": "5", "train.batch_size": "6", "train.progress": "false",
             "data.path": str(DATA / "count.tsv"), "eval_data.path": str(DATA / "count_eval.tsv"),
             "method_config": '{"mode": "fixed"}'}  # dropout on: seeded per micro-batch
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "trainer", "fit", "--config", str(CONFIG), "--out_dir", str(tmp_path / "ddp"),
           *[x for k, v in flags.items() for x in (f"--{k}", v)]]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = apply_overrides(load_config(CONFIG), {**flags, "train.accum_steps": "2",
                                                       "out_dir": str(tmp_path / "single")})
        single = fit(config)
    finally:
        torch.set_num_threads(previous)

    ddp = safetensors.torch.load_file(str(tmp_path / "ddp/checkpoint.safetensors"))
    one = safetensors.torch.load_file(str(single.checkpoint))
    assert ddp.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
    info = json.loads((tmp_path / "ddp/checkpoint.json").read_text())
    assert info["metadata"]["step"] == 5
    for name, value in single.metrics.items():
        if isinstance(value, float):
            assert info["metadata"]["metrics"][name] == pytest.approx(value, rel=1e-3, abs=1e-4), name
    log = [json.loads(l) for l in (tmp_path / "ddp/metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in log] == [5, 5] and "final" in log[-1]  # rank 0 alone writes the log
