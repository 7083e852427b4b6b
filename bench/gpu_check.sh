#!/usr/bin/env bash
# The GPU measurements of docs/PERFORMANCE.md, for a session that is lent a
# GPU machine. Two parts, each within one 10-min device run (by the timeouts):
#
#   bash bench/gpu_check.sh train   # 9 min at most: the CUDA-only test, a bf16 smoke run, train_bench
#   bash bench/gpu_check.sh peers   # 5 min at most: DeepFool and the k-NN on CUDA against the peers
#   bash bench/gpu_check.sh         # both, one after the other (14 min)
#
# Nothing to install for `train`: the machine's python3 has torch,
# torchvision and scikit-learn, which is all `import lpc_engine` needs. The
# peers (torchattacks, foolbox, ART, faiss-cpu) are the optional `bench`
# extra; the machine cannot reach a registry, so put them in a folder that
# travels with the tree (pip install --target bench/.peers ... here, carried)
# and they are found through PEERS_PATH; a missing one is skipped.
# Prints everything and keeps a copy in $OUT/gpu.txt (appended).
set -uo pipefail
cd "$(dirname "$0")/.."
part=${1:-all}
export PYTHONPATH=$PWD:${PEERS_PATH:-$PWD/bench/.peers} PYTHONUNBUFFERED=1
log=${OUT:-/tmp}/gpu.txt
bench="python3 bench/train_bench.py --dataset cifar-synthetic --samples 50000 --device cuda
       --backbone resnet18 --precision bf16 --workers 8 --repeats 3"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  if [[ $part == train || $part == all ]]; then
    # The CUDA-only test (crops on the GPU), and a 3-epoch bf16 run on the GPU.
    timeout 60 python3 -m pytest -q -p no:cacheprovider tests/engine/test_augment.py
    timeout 60 python3 -c "
from lpc_engine import build_config, train
cfg = build_config(None, {'dataset': 'synthetic', 'device': 'cuda', 'epochs': 3, 'precision': 'bf16'})
for e in train(cfg, run_dir='/tmp/gpu-runs/smoke'):
    print(type(e).__name__, getattr(e, 'epoch', ''), getattr(e, 'loss', ''), getattr(e, 'status', ''))"
    timeout 210 $bench
    timeout 210 $bench --compile
  fi
  if [[ $part == peers || $part == all ]]; then
    # Batched DeepFool should pull far ahead of the one-image-at-a-time peers on a GPU.
    timeout 150 python3 bench/deepfool_bench.py --device cuda --cnn-samples 1000 --rounds 3
    # ours and the matmul floor on the GPU; faiss-cpu and scikit-learn on all 16 cores.
    timeout 150 python3 bench/metrics_bench.py --knn-only --device cuda --rounds 2 --threads 16
  fi
} 2>&1 | tee -a "$log"
