#!/usr/bin/env bash
# The whole chapter recipe (2,100 steps, batch 64) on one GPU: ours vs PyTorch eager.
#
#   bash benchmarks/gpu_chapter.sh            # needs jax[cuda12] and a CUDA torch
#
# Ours runs the real command (train.py, configs/mnist78.py) with K steps per dispatch;
# its wall time includes compilation, checkpoints and sample grids. PyTorch runs the
# chapter's loop only. Each side prints its own line; compare the two wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
K=${K:-6}  # an epoch is 6 full batches (one dispatch) + the partial one (another)
WORKDIR=$(mktemp -d)
start=$(date +%s.%N)
python train.py --config configs/mnist78.py --workdir "$WORKDIR" \
  --config.steps_per_dispatch="$K" --config.log_every=700 2>&1 | grep -E "step 2100|error" || true
end=$(date +%s.%N)
echo "ours (jax, train.py, K=$K): 2100 steps in $(python -c "print(round($end - $start, 1))") s wall, compile and I/O included"
python benchmarks/torch_chapter.py --epochs 300
rm -rf "$WORKDIR"
