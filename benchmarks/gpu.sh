#!/usr/bin/env bash
# Every GPU number of issue 19 in one run on one GPU, within ~8 minutes, ending in one table.
#
#   bash benchmarks/gpu.sh                 # on the GPU machine, from the repository root
#   GPU_SH_SMOKE=1 bash benchmarks/gpu.sh  # the same plumbing on CPU at toy sizes (minutes)
#
# Needs: jax with CUDA and a CUDA torch installed; the pure-Python wheels a bare GPU image lacks
# (ml-collections, tensorboardX, pytorch-fid) may sit in .whl/ and are installed with
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl
# (no network needed). Rows (benchmarks/summary.py; ratio > 1: ours better):
#   1. chapter recipe end to end: `train.py --config configs/mnist78.py`, cold compilation cache
#      then warm, wall time of the whole command, vs PyTorch eager's loop alone
#      (benchmarks/torch_chapter.py, its models built and data on the device);
#   2. chapter steady state: benchmarks/train_step.py at batch 64 (one step, and K = 6 steps a
#      dispatch), steps/s vs the PyTorch step eager and torch.compile'd, interleaved;
#   3. the paper's model, CIFAR-10 recipe (5 D + 1 G, batch 64) in float32 and bfloat16 vs
#      StudioGAN's model code in eager fp32 (tests/reference/torch_resnet_sagan.py on CUDA);
#   4. the paper's model at 128 px, batch 256, 1 D + 1 G: ms/step and peak device memory;
#   5. FID Inception features, batch 50 of 32 px: images/s vs pytorch-fid on the same GPU, and
#      the time for 50,000 images;
#   6. the input pipeline (benchmarks/input_pipeline.py, host CPU only): images/s of each data
#      source through the trainer's prefetch path vs the rate the GPU step eats (rows 3-4).
# Each benchmark also prints its own lines (load, CPU time, compile times) into $LOGDIR.
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=${GPU_SH_SMOKE:-0}
LOGDIR=${LOGDIR:-$(mktemp -d /tmp/gpu_sh.XXXXXX)}
mkdir -p "$LOGDIR"
TABLE="$LOGDIR/table.jsonl"
: > "$TABLE"

if compgen -G ".whl/*.whl" > /dev/null; then
  pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

if [[ "$SMOKE" == 1 ]]; then
  DEVICE=cpu; TORCH_DEVICE=cpu; CONFIG=configs/tiny.py; TORCH_EPOCHS=1
  STEP_ARGS=(--batch_sizes 8 --width 8 --repeats 1 --k 2 --skip_options)
  CIFAR_ARGS=(--cases 32 --batch 2 --repeats 1 --implementations auto)
  BIG_ARGS=(--cases 32 --batch 4 --repeats 1 --implementations auto)
  FID_ARGS=(--batch_size 2 --repeats 1 --implementations xla)
  PIPELINE_ARGS=(--smoke)
  TRAIN_ARGS=()
else
  DEVICE=gpu; TORCH_DEVICE=cuda; CONFIG=configs/mnist78.py; TORCH_EPOCHS=${TORCH_EPOCHS:-300}
  STEP_ARGS=(--batch_sizes 64 --repeats 20 --k 6 --torch_compile)
  CIFAR_ARGS=(--cases cifar10 --repeats 10 --implementations auto)
  BIG_ARGS=(--cases 128 --batch 256 --repeats 5 --implementations auto)
  FID_ARGS=(--batch_size 50 --repeats 10 --implementations xla)
  PIPELINE_ARGS=(--repeats 5)
  TRAIN_ARGS=(--config.steps_per_dispatch=6)
fi

run() {  # run NAME CMD...: the command's output into $LOGDIR/NAME.log, its last lines shown
  local name=$1; shift
  echo "== $name: $*"
  "$@" > "$LOGDIR/$name.log" 2>&1 || { echo "!! $name failed; see $LOGDIR/$name.log"; \
    tail -5 "$LOGDIR/$name.log"; return 1; }
  tail -3 "$LOGDIR/$name.log"
}

seconds() { python -c "import time; print(time.time())"; }

echo "gpu.sh: smoke=$SMOKE, logs in $LOGDIR, $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
python -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', \
torch.__version__, 'cuda', torch.version.cuda)"

# 1. The chapter recipe end to end, cold then warm compilation cache (fresh workdirs).
CACHE=$(mktemp -d "$LOGDIR/cache.XXXXXX")
for temperature in cold warm; do
  start=$(seconds)
  JAX_COMPILATION_CACHE_DIR="$CACHE" run "train_$temperature" python train.py \
    --config "$CONFIG" --workdir "$(mktemp -d "$LOGDIR/run.XXXXXX")" "${TRAIN_ARGS[@]}"
  eval "wall_$temperature=$(python -c "print($(seconds) - $start)")"
done
run torch_chapter python benchmarks/torch_chapter.py --epochs "$TORCH_EPOCHS" \
  --device "$TORCH_DEVICE"
torch_loop=$(grep -oP "steps in \K[0-9.]+(?= s)" "$LOGDIR/torch_chapter.log")
for temperature in cold warm; do
  wall_var="wall_$temperature"
  python benchmarks/summary.py add "$TABLE" "chapter recipe end to end, $temperature cache" \
    "${!wall_var}" "$torch_loop" s lower "ours: train.py whole command; torch: its loop only"
done

# 2. The chapter's steady state.
run chapter_step python benchmarks/train_step.py --device "$DEVICE" "${STEP_ARGS[@]}" \
  --summary "$TABLE"

# 3.-4. The paper's model.
for dtype in float32 bfloat16; do
  run "cifar10_$dtype" python benchmarks/resnet_step.py --device "$DEVICE" \
    --compute_dtype "$dtype" "${CIFAR_ARGS[@]}" --summary "$TABLE"
done
run resnet128 python benchmarks/resnet_step.py --device "$DEVICE" "${BIG_ARGS[@]}" \
  --summary "$TABLE"

# 5. FID features.
run inception python benchmarks/inception.py --device "$DEVICE" "${FID_ARGS[@]}" \
  --summary "$TABLE"

# 6. The input pipeline: can each data source feed the step of rows 3-4?
run input_pipeline python benchmarks/input_pipeline.py "${PIPELINE_ARGS[@]}" --summary "$TABLE"

echo
python benchmarks/summary.py table "$TABLE"
