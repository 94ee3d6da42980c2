#!/usr/bin/env bash
# The serving sweep on a quiet machine: `cifrenet-edge serve` here, then 1, 2, 4 and 8
# concurrent clients through it, beside the same model run locally (benchmarks/serving/README.md).
#
#   benchmarks/serving/run.sh                 # exports a 640x360 --dynamic FP32 model first
#   MODEL=models/x.engine benchmarks/serving/run.sh --seconds 10
#
# Extra arguments go to `cifrenet-edge bench` (--seconds, --clients, --frame, --local).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${MODEL:-models/serving/cifrenet_cityscapes_640x360_dynamic_fp32.onnx}
PORT=${PORT:-8001}            # gRPC; HTTP is PORT-1, metrics PORT+1
RESULTS=benchmarks/serving/results
if [ ! -f "$MODEL" ]; then
    cifrenet-edge export --res 640x360 --dynamic --output "$MODEL" --quiet
fi
mkdir -p "$RESULTS"
LOG=$(mktemp -d)
cifrenet-edge serve "$MODEL" --host 127.0.0.1 --grpc-port "$PORT" --http-port $((PORT - 1)) \
    --metrics-port $((PORT + 1)) --log-file "$LOG/triton.log" 2> "$LOG/serve.err" &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER || true' EXIT
for _ in $(seq 300); do  # the model's readiness, not only the server's
    curl -sf "http://127.0.0.1:$((PORT - 1))/v2/models/cifrenet/ready" > /dev/null && break
    kill -0 $SERVER 2>/dev/null || { cat "$LOG/serve.err"; exit 1; }
    sleep 0.5
done
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
cifrenet-edge bench --model "grpc://127.0.0.1:$PORT/cifrenet" --metrics-port $((PORT + 1)) \
    --seconds 5 --json "$RESULTS/serving_$(hostname)_$STAMP.json" "$@"
