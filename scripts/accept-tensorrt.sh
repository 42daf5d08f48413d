#!/usr/bin/env bash
# Acceptance of ptqcore's TensorRT backend on a Jetson or a GPU machine (see README, "TensorRT").
#
#   scripts/accept-tensorrt.sh [OUT_DIR]
#
# 1. creates (or reuses) a virtual environment with --system-site-packages, so JetPack's tensorrt and
#    NVIDIA's torch are visible in it, installs ptqcore into it and runs `ptqcore doctor` (exit 2 on an ERROR);
# 2. runs the suite on TensorRT for two models, every precision (base, FP32, FP16, INT8), with
#    --ptq-profile-layers (TensorRT's IProfiler per engine layer, after and apart from the timed rounds;
#    the tables land in OUT_DIR/run.layers/, and INT8 records say where INT8 loses against FP16);
# 3. runs trtexec --loadEngine on each engine the suite timed, with pinned settings (--exposeDMA,
#    spin-wait, no transfers, and CUDA graphs as the suite ran: --useCudaGraph up to 10.x when the
#    record says cuda_graph, --noCudaGraph on 11.x when it does not; see accept_tensorrt.py), and
#    compares trtexec's GPU compute median with ptqcore's gpu_compute_ms p50 (PASS within 5%).
#
# Environment: PTQ_VENV (default .venv-tensorrt), PTQ_MODELS (default mobilenet_v3_small,resnet18),
# PTQ_TOLERANCE (default 0.05), TRTEXEC (default: PATH, then /usr/src/tensorrt/bin/trtexec),
# PTQ_PYTHON (default python3), PTQ_CUDA_GRAPH=1 (run the suite with --ptq-trt-cuda-graph, and
# trtexec with graphs). Exit status: 0 all engines PASS, 1 otherwise, 2 setup failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/accept-tensorrt}"
VENV="${PTQ_VENV:-$ROOT/.venv-tensorrt}"
MODELS="${PTQ_MODELS:-mobilenet_v3_small,resnet18}"
TOLERANCE="${PTQ_TOLERANCE:-0.05}"
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ]; then
    "${PTQ_PYTHON:-python3}" -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip  # JetPack 5's pip has no --dry-run --report
# only what is missing: NVIDIA's torch, torchvision, numpy, onnxruntime-gpu and TensorRT stay (exit 2 if they cannot)
"$VENV/bin/python" "$ROOT/scripts/jetson_install.py" || exit 2
# what the run will measure: a CPU torch beside TensorRT, a CPU onnxruntime shadowing onnxruntime-gpu or a
# numpy torch cannot use would make the comparison meaningless (exit 1 of doctor = setup failed)
"$VENV/bin/ptqcore" doctor | tee "$OUT/doctor.txt" || exit 2

if ! "$VENV/bin/python" - <<'EOF'
import sys
from ptqcore.backends import tensorrt_unavailable_reason
reason = tensorrt_unavailable_reason()
if reason:
    sys.exit(f"error: {reason}")
import tensorrt, torch
print(f"TensorRT {tensorrt.__version__}, torch {torch.__version__}, GPU {torch.cuda.get_device_name(0)}")
EOF
then
    exit 2
fi

# A failing accuracy or size threshold must not stop the timing comparison: keep pytest's status.
set +e
GRAPH_FLAG=()
if [ "${PTQ_CUDA_GRAPH:-0}" = "1" ]; then
    GRAPH_FLAG=(--ptq-trt-cuda-graph)
fi
"$VENV/bin/pytest" "$ROOT/benchmarks/" -p no:cacheprovider \
    --ptq-backends tensorrt --ptq-models "$MODELS" --ptq-profile-layers ${GRAPH_FLAG[@]+"${GRAPH_FLAG[@]}"} \
    --benchmark-json "$OUT/run.json" 2>&1 | tee "$OUT/pytest.log"
PYTEST_STATUS=${PIPESTATUS[0]}
set -e
echo "pytest exited $PYTEST_STATUS (log: $OUT/pytest.log)"
if [ ! -s "$OUT/run.json" ]; then
    echo "error: the suite wrote no $OUT/run.json" >&2
    exit 2
fi

"$VENV/bin/python" "$ROOT/scripts/accept_tensorrt.py" "$OUT/run.json" \
    --tolerance "$TOLERANCE" --logs "$OUT/trtexec" ${TRTEXEC:+--trtexec "$TRTEXEC"} | tee "$OUT/verdict.txt"
exit "${PIPESTATUS[0]}"
