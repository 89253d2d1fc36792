#!/usr/bin/env bash
# The GPU checks in one go, for a lent CUDA machine (see docs/performance.md, "GPU"):
# bench/gpu_bench.py on synthetic tensors, then the real trainer under torchrun (nccl) on
# 224 px demo JPEGs. Writes everything under ${OUT:-bench/results/gpu}.
set -uo pipefail
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

timeout 330 python3 -m bench.gpu_bench > "$OUT/gpu_bench.json" 2> "$OUT/gpu_bench.err"
echo "gpu_bench exit $?"; tail -c 3000 "$OUT/gpu_bench.json"; tail -n 5 "$OUT/gpu_bench.err"

data=/tmp/demo224
t0=$(date +%s.%N)
timeout 100 python3 -m trainer make-demo-data $data --classes 100 --train-per-class 60 \
  --val-per-class 10 --image-size 224 --quiet
echo "demo data 224 px, 7000 JPEGs: $(echo "$(date +%s.%N) - $t0" | bc) s"
timeout 150 torchrun --nproc-per-node 1 -m trainer train --data $data --runs-dir /tmp/runs \
  --name r50-224 --arch resnet50_v2 --epochs 3 --batch-size 256 --image-size 224 \
  --workers 14 --lr 0.2 --keep-models 1 > "$OUT/train.log" 2>&1
echo "trainer exit $?"; tail -n 5 "$OUT/train.log"
cp /tmp/runs/r50-224/metrics.jsonl "$OUT/metrics.jsonl" 2>/dev/null
grep '"kind": "epoch"' "$OUT/metrics.jsonl" | cut -c1-400
grep '"kind": "device"' "$OUT/metrics.jsonl" | tail -n 2
ls -la /tmp/runs/r50-224 /tmp/runs/r50-224/predictions 2>/dev/null | head -20
