#!/usr/bin/env bash
# The GPU measurements of docs/PERFORMANCE.md in one run, for a session that
# is lent a GPU machine (9 min at most, by the timeouts, within one 10-min run; nothing to install: its
# python3 has torch, torchvision and scikit-learn, which is all `import
# lpc_engine` needs; the CLI would also need plotext, which it lacks).
# Prints everything and keeps a copy in $OUT/gpu.txt.
#
#   bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
log=${OUT:-/tmp}/gpu.txt
bench="python3 bench/train_bench.py --dataset cifar-synthetic --samples 50000 --device cuda
       --backbone resnet18 --precision bf16 --workers 8 --repeats 3"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  # The CUDA-only test (crops on the GPU), and a 3-epoch bf16 run on the GPU.
  timeout 60 python3 -m pytest -q -p no:cacheprovider tests/engine/test_augment.py
  timeout 60 python3 -c "
from lpc_engine import build_config, train
cfg = build_config(None, {'dataset': 'synthetic', 'device': 'cuda', 'epochs': 3, 'precision': 'bf16'})
for e in train(cfg, run_dir='/tmp/gpu-runs/smoke'):
    print(type(e).__name__, getattr(e, 'epoch', ''), getattr(e, 'loss', ''), getattr(e, 'status', ''))"
  timeout 210 $bench
  timeout 210 $bench --compile
} 2>&1 | tee "$log"
