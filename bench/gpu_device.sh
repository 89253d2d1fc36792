#!/usr/bin/env bash
# The GPU checks in one go, for a lent CUDA machine (see docs/performance.md, "GPU"), about
# 10 minutes: bench/gpu_bench.py on synthetic tensors (ResNet-18/50, with and without
# torch.compile), then the real trainer under torchrun (nccl) from JPEGs: ResNet-18 v2 224 px
# bf16 with the GPU decoder (--decode gpu: nvJPEG) and with the CPU one, ResNet-50 v2 with the
# GPU decoder, and ResNet-18 from a prepared store. Each run's epoch events give training and
# eval img/s; run.json's data.loader and the log's "data:" line say which decode path ran.
# Writes everything under ${OUT:-bench/results/gpu}.
set -uo pipefail
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
python3 -c "import torchvision, torchvision.io as io; print('torchvision', torchvision.__version__)" 2>&1 | tail -n 1 | tee -a "$OUT/gpu.txt"
python3 -c "import torch; from trainer.gpu_decode import choose; print('decode auto ->', choose('auto', torch.device('cuda')))" 2>&1 | tail -n 1 | tee -a "$OUT/gpu.txt"

timeout 240 python3 -m bench.gpu_bench > "$OUT/gpu_bench.json" 2> "$OUT/gpu_bench.err"
echo "gpu_bench exit $?"; tail -c 2000 "$OUT/gpu_bench.json"; tail -n 5 "$OUT/gpu_bench.err"

data=/tmp/demo224
t0=$(date +%s.%N)
timeout 90 python3 -m trainer make-demo-data $data --classes 100 --train-per-class 100 \
  --val-per-class 10 --image-size 224 --quiet
echo "demo data 224 px, 11000 JPEGs: $(echo "$(date +%s.%N) - $t0" | bc) s"

train() {  # name, seconds, extra options...
  local name=$1 limit=$2; shift 2
  timeout "$limit" torchrun --nproc-per-node 1 -m trainer train --runs-dir /tmp/runs \
    --name "$name" --epochs 2 --image-size 224 --workers 14 --keep-models 1 "$@" \
    > "$OUT/$name.log" 2>&1
  echo "$name exit $?"
  grep -E '^(data:|epoch )' "$OUT/$name.log"
  python3 - "$name" <<'EOF'
import json, sys
run = f"/tmp/runs/{sys.argv[1]}"
try:
    info = json.load(open(f"{run}/run.json"))
    events = [json.loads(l) for l in open(f"{run}/metrics.jsonl")]
except OSError as e:
    print("no run:", e); raise SystemExit
epochs = [e for e in events if e["kind"] == "epoch"]
print(json.dumps({"run": sys.argv[1], "loader": info["data"]["loader"],
                  "arch": info["arch"], "batch": info["batch_size"],
                  "train_img_per_s": [round(e["img_per_s"]) for e in epochs],
                  "val_img_per_s": [round(e["val_img_per_s"]) for e in epochs]}))
EOF
  cp "/tmp/runs/$name/metrics.jsonl" "$OUT/$name.metrics.jsonl" 2>/dev/null
}

train r18-jpeg-nvjpeg 120 --data $data --arch resnet18_v2 --batch-size 1024 --lr 0.4 --decode gpu
train r18-jpeg-cpu 120 --data $data --arch resnet18_v2 --batch-size 1024 --lr 0.4 --decode cpu
train r50-jpeg-nvjpeg 150 --data $data --arch resnet50_v2 --batch-size 256 --lr 0.2 --decode gpu
timeout 60 python3 -m trainer prepare-data $data /tmp/store224 --max-side 256 --quiet
train r18-prepared-nvjpeg 100 --data /tmp/store224 --arch resnet18_v2 --batch-size 1024 \
  --lr 0.4 --decode gpu
