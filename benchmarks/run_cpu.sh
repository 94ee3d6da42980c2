#!/usr/bin/env bash
# CPU benchmark, one command: every CPU backend and precision at the paper's speed
# resolution, recorded into benchmarks/results/ (JSON + PNG, named by host and time).
# Run it on a quiet machine; extra arguments go to `cifrenet-edge bench`
# (e.g. --seconds 5, --threads 2, --res 1024x512).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cifrenet-edge bench --res 640x360 --seconds "${SECONDS_PER_SERIES:-3}" --estimate cpu "$@"
