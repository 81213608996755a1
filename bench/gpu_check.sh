#!/usr/bin/env bash
# The trainer's GPU checks, in one short run on a lent GPU machine (see BENCHMARKS.md, "Trainer on a GPU"):
#   1. `python -m trainer fit` on CUDA with mixed precision over the shipped fixture table, then `eval`
#      reloading the checkpoint (metrics must equal the ones fit printed);
#   2. the same fit under torchrun (NCCL, one process per GPU);
#   3. training throughput of `Trainer` beside a bare torch loop (bench/train_throughput.py), on the demo
#      backbone and on ViT-B-16-shaped tokens, fp32 and AMP.
# Usage: DEVICE=cuda OUT=/tmp/out bash bench/gpu_check.sh   (DEVICE=cpu runs the same commands, slowly)
set -uo pipefail
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/gpu-check}
PY=${PY:-python3}
AMP=$([ "$DEVICE" = cuda ] && echo true || echo false)
STEPS=${STEPS:-50}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
run() { echo "+ $*"; "$@"; }

[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY -c "import torch, open_clip; print('torch', torch.__version__, 'open_clip', open_clip.__version__,
          torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')"

cfg=trainer/configs/tiny-test.yaml
run $PY -m trainer fit --config $cfg --train.device "$DEVICE" --train.amp $AMP --train.progress false \
    --out_dir /tmp/fit-gpu
cp /tmp/fit-gpu/metrics.jsonl "$OUT/fit-metrics.jsonl"
run $PY -m trainer eval --config $cfg --train.device "$DEVICE" --checkpoint /tmp/fit-gpu/checkpoint.safetensors

run $PY -m torch.distributed.run --standalone --nproc_per_node=1 -m trainer fit --config $cfg \
    --train.device "$DEVICE" --train.amp $AMP --train.progress false --out_dir /tmp/fit-ddp

for backbone in demo ViT-B-16; do
  for amp in "" --amp; do
    [ "$DEVICE" != cuda ] && [ -n "$amp" ] && continue
    run $PY -m bench.train_throughput --backbone $backbone --device "$DEVICE" --batch 64 --steps "$STEPS" $amp
  done
done
