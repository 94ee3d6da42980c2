#!/usr/bin/env bash
# GPU machine, one command.
#
# Stage 1, on any NVIDIA GPU with CUDA, CuPy, cuda-python and PyTorch (TensorRT not needed):
# tests/gpu_checks.py verifies the TensorRT backend over real device memory (stand-in
# engines that compute the network with PyTorch on the backend's pointers and stream; the 8.2
# binding API and the 10.x tensor API, fixed and dynamic shapes, 4 threads, close() racing
# predict, CUDA graphs, benchmark_gpu), trt/cuda.py's pinned buffers, streams, events and
# graphs, CuPy's argmax against the CPU path, and bench's PyTorch CUDA FP32/FP16 rows. One JSON
# file in $OUT (else benchmarks/results/), about a minute, killed at 8 minutes; any failed check
# exits non-zero. Nothing is installed: the checkout runs from PYTHONPATH.
#
# Stage 2, only where TensorRT is installed (GTX 1080 Ti, Jetson; CHECKS_ONLY=1 skips it): the
# full benchmark, TensorRT FP32/FP16/INT8 with and without CUDA graphs (TensorRT 8.5+), PyTorch on
# CUDA (the paper's setting), ONNX Runtime/OpenVINO on the CPU for reference, cross-checked with
# trtexec when it is on the PATH, at all five of the paper's resolutions, with the roofline
# estimate for the device named by DEVICE (gtx1080ti, jetson-nano, xavier-nx, orin-nano,
# agx-orin). Extra arguments go to `cifrenet-edge bench`. On a Jetson, first:
# sudo nvpmodel -m 0 && sudo jetson_clocks
#
# `benchmarks/run_gpu.sh --dry-run`: stage 1 only, on the simulated CUDA of tests/support/cuda_sim.py
# with PyTorch on the CPU (no GPU needed; what CI and tests/test_gpu_checks.py run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--dry-run" ]; then
  shift
  exec timeout "${CHECKS_TIMEOUT:-480}" python3 tests/gpu_checks.py --dry-run \
    --out "${OUT:-benchmarks/results}" "$@"
fi
status=0
timeout "${CHECKS_TIMEOUT:-480}" python3 tests/gpu_checks.py --out "${OUT:-benchmarks/results}" \
  || status=$?
if [ -z "${CHECKS_ONLY:-}" ] && python3 -c "import tensorrt" 2>/dev/null; then
  python3 -m cifrenet_edge bench \
    --res 640x360 --res 512x512 --res 713x713 --res 1024x448 --res 1024x512 \
    --seconds "${SECONDS_PER_SERIES:-3}" --estimate "${DEVICE:-gtx1080ti}" "$@" || status=$?
fi
exit "$status"
