"""INT8 vs FP32 end to end, one model per process, as a robot runs it.

    python benchmarks/int8_cpu/isolated.py                  # 5 alternating repetitions, ~4 min
    python benchmarks/int8_cpu/isolated.py --emulate-avx2   # oneDNN capped at AVX2

``run.py`` times a dozen candidates interleaved in one process: fair between them, but on a
2-core VM every compiled model's worker threads live side by side, and whole runs there
came out 1.3x or 2.4x for the same INT8 path. A robot's process holds one Segmenter. So
here each repetition starts a fresh process per model (the toolkit's INT8 file with the
runtime's own backend choice, the FP32 file on ONNX Runtime and on OpenVINO), alternating,
and times ``Segmenter.predict`` on a 1280x720 frame (resize, normalise, inference, class
map). Each repetition's ratio is INT8 against the faster FP32 of that repetition; the
headline is the median. Under ``--emulate-avx2`` the FP32 reference is OpenVINO only (ONNX
Runtime ignores the oneDNN cap, so its FP32 is no AVX2 figure). The models are the
640x360 probe model of ``run.py`` (same calibration). Writes
``results/isolated-<host>-<UTC time>.json``.
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ONE = """
import json, sys, time
import numpy as np
from cifrenet_edge import Segmenter
from cifrenet_edge.data.synthetic import make_scene
frame = make_scene(7, (1280, 720))[0]
with Segmenter.open(sys.argv[1], backend=sys.argv[2] or None, device="cpu", warmup=3) as seg:
    ts = []
    for _ in range(int(sys.argv[3])):
        t = time.perf_counter()
        seg.predict(frame)
        ts.append((time.perf_counter() - t) * 1e3)
    print(json.dumps({"median_ms": float(np.median(ts)), "p10_ms": float(np.percentile(ts, 10)),
                      "p90_ms": float(np.percentile(ts, 90)), "backend": seg.backend.name,
                      "reason": seg.reason}))
"""


def _time(path: Path, backend: str, iters: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", ONE, str(path), backend, str(iters)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="alternating repetitions")
    ap.add_argument("--iters", type=int, default=30, help="timed predict calls per process")
    ap.add_argument("--emulate-avx2", action="store_true", help="cap oneDNN at AVX2")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.emulate_avx2:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"  # inherited by every timed process
    from run import machine, prepare

    info = {"machine": machine(), "emulated_avx2": args.emulate_avx2, "iters": args.iters}
    cands = {"toolkit int8": "", "onnxruntime fp32": "onnxruntime", "openvino fp32": "openvino"}
    if args.emulate_avx2:
        del cands["onnxruntime fp32"]
    reps = []
    with tempfile.TemporaryDirectory(prefix="int8_isolated_") as tmp:
        fp32, int8, _ = prepare(Path(tmp), (640, 360), info=info)
        fp32, int8 = fp32.path, int8.path
        for r in range(args.reps):
            rep = {}
            for name, backend in cands.items():
                rep[name] = _time(int8 if name == "toolkit int8" else fp32, backend, args.iters)
            fastest = min(v["median_ms"] for k, v in rep.items() if "fp32" in k)
            rep["int8_vs_faster_fp32"] = fastest / rep["toolkit int8"]["median_ms"]
            print(
                f"rep {r + 1}: "
                + ", ".join(
                    f"{k} {v['median_ms']:.1f} ms" for k, v in rep.items() if isinstance(v, dict)
                )
                + f"; INT8 vs the faster FP32 {rep['int8_vs_faster_fp32']:.2f}x",
                flush=True,
            )
            reps.append(rep)
    ratios = [r["int8_vs_faster_fp32"] for r in reps]
    info.update(
        reps=reps,
        int8_path=reps[0]["toolkit int8"]["reason"],
        headline={"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)},
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    info["machine"]["loadavg_end"] = os.getloadavg()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out or HERE / "results" / f"isolated-{socket.gethostname()}-{stamp}.json")
    out.write_text(json.dumps(info, indent=1) + "\n")
    print(
        f"headline: INT8 vs the faster FP32, median of {len(ratios)}: "
        f"{info['headline']['median']:.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}x)"
    )
    print(f"wrote {out}")
    return info


if __name__ == "__main__":
    main()
