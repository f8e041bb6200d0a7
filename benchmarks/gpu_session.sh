#!/usr/bin/env bash
# Every check of the kit that needs a GPU, in one prepared run (a lent GPU machine is held
# by the minute, so it runs once, each step under its own time limit, logs in OUT_DIR):
#
# (most important first, so that a cut-short loan still yields the profile):
#   1. overfit calibration of the GPU profile: 8 reference seeds + every broken variant
#   2. grading the reference on the GPU with the new profile, inside bubblewrap
#   3. training-step benchmark: reference detector vs torchvision's FasterRCNN, same backbone
#   4. NMS benchmark: greedy reference vs the previous one vs torchvision, RPN step and plain calls
#   5. the kit's CUDA-only tests
#
# Usage (from the repository root):
#   bash benchmarks/gpu_session.sh OUT_DIR            # on a CUDA machine: the real run (about 8 minutes)
#   bash benchmarks/gpu_session.sh OUT_DIR --cpu-dry  # here: every step on the CPU with tiny settings
#
# On the workplace's device tool: carry .whl (defusedxml and pycocotools wheels for the image's
# Python) and .gpu (the bubblewrap .deb), and run `bash benchmarks/gpu_session.sh $OUT` there;
# then copy OUT_DIR/cuda.toml to autograder/profiles/ and record the numbers in
# docs/BENCHMARKS.md and docs/OVERFIT_CALIBRATION.md.
set -u
OUT="${1:?usage: gpu_session.sh OUT_DIR [--cpu-dry]}"
MODE="${2:-}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"

# Wheels the GPU image lacks, and bubblewrap unpacked from its .deb (no installs there).
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! command -v bwrap >/dev/null 2>&1 && ls .gpu/*.deb >/dev/null 2>&1; then
    for deb in .gpu/*.deb; do dpkg -x "$deb" /tmp/bw; done
    export PATH="/tmp/bw/usr/bin:$PATH"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 RCNN_KIT_OFFLINE=1 MPLBACKEND=Agg

if [ "$MODE" = "--cpu-dry" ]; then
    DEVICE=cpu; NMS_ARGS=(--iters 1 --warmup 0 --sizes 100 --batch-sizes 2 --threads 1); STEP_ARGS=(--iters 1 --warmup 0 --batch-size 2)
    CAL_ARGS=(--seeds 1 --variants rpn_loss_zero --variant-seeds 1 --jobs 1 --iterations 4)
    LIMITS=(120 300 900 600 120)
else
    DEVICE=cuda; NMS_ARGS=(--iters 20 --warmup 3); STEP_ARGS=(--iters 20 --warmup 5 --batch-size 16)
    CAL_ARGS=(--seeds 8 --variants all --variant-seeds 1 --jobs 8)
    LIMITS=(40 50 270 75 25)
fi

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, keep the log, show its end
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    echo "=== $name (limit ${limit} s) $(date -u +%H:%M:%S)"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "=== $name: exit $rc after $(( $(date +%s) - start )) s"
    tail -n 20 "$OUT/$name.log"
}

{ nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"; "$PY" -c "import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__, torch.cuda.is_available())"; command -v bwrap; } >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

step calibrate "${LIMITS[2]}" "$PY" -m autograder.calibration --device "$DEVICE" --data synthetic "${CAL_ARGS[@]}" \
    --out "$OUT/$DEVICE.toml"
rm -rf /tmp/gpu_session_ref && mkdir -p /tmp/gpu_session_ref && cp -r solutions/faster_rcnn /tmp/gpu_session_ref/
PROFILE_ARGS=()
[ -f "$OUT/$DEVICE.toml" ] && PROFILE_ARGS=(--overfit-profile "$OUT/$DEVICE.toml" --force-overfit-profile)
step grade_reference "${LIMITS[3]}" "$PY" -m autograder grade /tmp/gpu_session_ref --device "$DEVICE" \
    --results "$OUT/grade_reference.json" "${PROFILE_ARGS[@]}"
step train_step "${LIMITS[1]}" "$PY" benchmarks/train_step.py --device "$DEVICE" "${STEP_ARGS[@]}"
step nms_rpn "${LIMITS[0]}" "$PY" benchmarks/nms_rpn.py --device "$DEVICE" "${NMS_ARGS[@]}" --json "$OUT/nms_rpn.json"
step cuda_tests "${LIMITS[4]}" "$PY" -m pytest -q -p no:cacheprovider tests/solutions/test_iou_nms.py tests/solutions/test_overfit_reference.py -k cuda
echo "=== done; files in $OUT"
