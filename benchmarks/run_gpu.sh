#!/usr/bin/env bash
# GPU benchmark, one command, for the day a GPU is available (GTX 1080 Ti or Jetson):
# TensorRT FP32/FP16/INT8 (with and without CUDA graphs on TensorRT 10+), PyTorch on CUDA
# (the paper's setting), ONNX Runtime/OpenVINO on the CPU for reference, cross-checked
# with trtexec when it is on the PATH, at all five of the paper's resolutions, with the
# roofline estimate for the device named by DEVICE (gtx1080ti, jetson-nano, xavier-nx,
# orin-nano, agx-orin). On a Jetson, first: sudo nvpmodel -m 0 && sudo jetson_clocks
set -euo pipefail
cd "$(dirname "$0")/.."
exec cifrenet-edge bench \
  --res 640x360 --res 512x512 --res 713x713 --res 1024x448 --res 1024x512 \
  --seconds "${SECONDS_PER_SERIES:-3}" --estimate "${DEVICE:-gtx1080ti}" "$@"
