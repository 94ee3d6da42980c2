"""INT8 vs FP32 on this CPU, end to end through the toolkit's runtime: one command.

    python benchmarks/int8_cpu/run.py                 # 640x360, 3 interleaved runs, ~4 min
    python benchmarks/int8_cpu/run.py --rounds 60 --weights best.pth --calib frames/
    python benchmarks/int8_cpu/run.py --emulate-avx2  # an AVX2-only CPU's int8 kernels
    PYTHONPATH=$PWD /work/venv-nncf/bin/python benchmarks/int8_cpu/run.py   # + the NNCF row

Exports the FP32 ONNX (``export.export_onnx``), quantizes it (``quantize.quantize_onnx``,
the TensorRT-style s8 symmetric Q/DQ file), then times, interleaved in reshuffled blocks
(the bench's scheduler) so load from other users hits every candidate alike:

- ``toolkit fp32`` / ``toolkit int8``: ``Segmenter.open(path)`` with the runtime's own
  backend choice, ``predict(frame)`` on a real-sized BGR frame (preprocess + inference +
  argmax): the number a user gets; the headline is the ratio of the two.
- every engine on both files, compute only (``backend.infer``): onnxruntime and OpenVINO
  (f32 inference precision, as the runtime sets it), plus OpenVINO with its default
  inference precision (bf16 on AMX/AVX512-BF16 CPUs) to show what an "FP32" baseline
  silently becomes without the hint.

Every INT8 path's class-map agreement with FP32 is recorded beside its speed, on held-out
synthetic scenes: the export's gate (Q/DQ evaluated in float), the 7-bit CPU variant, and
what each runtime path really returns on this CPU.

``--emulate-avx2`` caps oneDNN at AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``, which OpenVINO obeys):
an AVX-512 VNNI Xeon then runs OpenVINO's int8 kernels as an AVX2-only CPU does,
saturation included, and the runtime takes its 7-bit path. ONNX Runtime ignores the cap, so
the FP32 reference for the headline ratio is then OpenVINO FP32 under the same cap (ONNX
Runtime's uncapped FP32 is timed and reported too). On a real AVX2-only CPU run it without
the flag.

Rows for the CPU variants (``openvino int8 u8 inputs``: the runtime's path without an int8
dot product; ``openvino int8 7-bit weights``: the older all-7-bit variant) and the peer,
``nncf int8`` (``peers.py``: NNCF given the same FP32 ONNX and the same calibration frames,
``preset=PERFORMANCE``; skipped with the reason where nncf is not importable). The timed
block is repeated ``--runs`` times (default 3); the headline is the median of the runs'
ratios, each run's ratios are recorded. ``--profile`` adds OpenVINO's per-node profile of
the toolkit INT8 and OpenVINO FP32 models (``PERF_COUNT``).

It also records why onnxruntime is slow on the s8 file: the op counts of the graph ORT
actually executes after its own optimisations (float Convs left between Q/DQ pairs).
Writes ``benchmarks/int8_cpu/results/<host>-<UTC time>.json`` with the machine (CPU model,
flags, cores, load) and library versions. Without --weights, a linear-probe model
(``cifrenet_edge.model.linear_probe``) stands in for trained weights; speed does not depend
on the weights.
"""

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import NncfModel, nncf_missing, profile, toolkit_int8_compiler  # noqa: E402

FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx_vnni_int8",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
)


def machine() -> dict:
    info = {"platform": platform.platform(), "python": sys.version.split()[0]}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln)
        flags = next(
            ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")
        )
        info["cpu_model"] = model
        info["flags"] = {f: f in flags for f in FLAGS_OF_INTEREST}
        info["hypervisor"] = "hypervisor" in flags
    except (OSError, StopIteration):
        info["cpu_model"] = platform.processor()
    info["logical_cores"] = os.cpu_count()
    info["affinity_cores"] = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    )
    info["loadavg_start"] = os.getloadavg()
    versions = {}
    for mod in ("onnxruntime", "openvino", "onnx", "torch", "numpy", "cv2"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = None
    import cifrenet_edge

    versions["cifrenet_edge"] = cifrenet_edge.__version__
    info["versions"] = versions
    return info


def ort_executed_graph(path: Path) -> dict:
    """Op counts of the graph onnxruntime really runs (after its Q/DQ fusions)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ops = Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    keys = ("Conv", "QLinearConv", "QuantizeLinear", "DequantizeLinear", "Clip", "Transpose")
    return {k: ops.get(k, 0) for k in keys}


def interleaved(cands: dict, rounds: int, warmup: int = 3) -> dict:
    """Time every candidate with the bench's own scheduler (``bench.run_interleaved``):
    round-robin blocks in a reshuffled order, each opened by one untimed query so that one
    library's spin-waiting worker threads do not bill the next library's timed query."""
    from cifrenet_edge.bench import Series, run_interleaved

    series = [Series(k, f) for k, f in cands.items()]
    run_interleaved(series, warmup=warmup, iters=rounds, seconds=None)
    for s in series:
        if s.error:
            raise RuntimeError(f"{s.key}: {s.error}")
    return {
        s.key: {
            "median_ms": float(np.median(s.samples_ms)),
            "p10_ms": float(np.percentile(s.samples_ms, 10)),
            "p90_ms": float(np.percentile(s.samples_ms, 90)),
            "n": len(s.samples_ms),
        }
        for s in series
    }


AGREEMENT_FRAMES = 8


def _openvino_default(path, x, threads, info):
    """OpenVINO's default inference precision (no hint): what "FP32" silently becomes."""
    import openvino as ov

    cfg = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = threads
    dflt = ov.Core().compile_model(str(path), "CPU", cfg)
    info["openvino_default_inference_precision"] = str(
        dflt.get_property("INFERENCE_PRECISION_HINT")
    )
    req = dflt.create_infer_request()
    return lambda: req.infer({0: x})


def _agreements(seg: dict, wh) -> dict:
    """Each open path's class-map agreement with the toolkit FP32 path, end to end.

    Held-out synthetic scenes (seeds 9000+), never calibrated on, at 1280x720.
    """
    from cifrenet_edge.data.synthetic import make_scene

    frames = [make_scene(9000 + i, (1280, 720))[0] for i in range(AGREEMENT_FRAMES)]
    ref = [seg["toolkit fp32"].predict(f) for f in frames]
    out = {}
    for name, s in seg.items():
        if name == "toolkit fp32":
            continue
        got = [s.predict(f) for f in frames]
        out[name] = float(np.mean([(a == b).mean() for a, b in zip(ref, got)]))
    return out


def _seven_bit_only(int8, tmp: Path) -> Path:
    """A copy of the INT8 file whose manifest only verifies the all-7-bit variant."""
    from cifrenet_edge.manifest import write_manifest

    out = tmp / "m_int8_w7only.onnx"
    out.write_bytes(Path(int8.path).read_bytes())
    m = int8.manifest
    variants = {"weights_7bit": m.variant("weights_7bit")}
    write_manifest(out, m.with_(parity=dict(m.parity, variants=variants)))
    return out


def _calibration_frames(calib, fp32) -> list:
    """The preprocessed frames ``quantize_onnx`` calibrated on (its held-out split removed)."""
    from cifrenet_edge.data.calibration import load_calibration
    from cifrenet_edge.quantize.int8 import _split

    m = fp32.manifest
    data = load_calibration(calib, m.nominal_wh, mean_bgr=list(m.mean_bgr), scale=m.scale)
    return list(_split(data)[0].batches)


def _profiles(int8, fp32, x, info, threads) -> dict:
    import openvino as ov

    variant = info["toolkit_backends"]["int8_variant"]
    out = {
        "toolkit int8": profile(
            toolkit_int8_compiler(int8.path, int8.manifest, variant, threads), x
        )
    }
    out["toolkit int8"]["variant"] = variant
    out["openvino fp32"] = profile(
        lambda cfg: ov.Core().compile_model(str(fp32.path), "CPU", cfg), x
    )
    return out


def _open_variant_rows(seg: dict, int8, fp32, calib, tmp: Path, threads, info: dict) -> None:
    """The CPU-variant rows (8-bit forced, u8 inputs, all-7-bit) and the NNCF peer."""
    from cifrenet_edge.runtime import Segmenter

    before = os.environ.get("CIFRENET_EDGE_INT8_DOT")
    os.environ["CIFRENET_EDGE_INT8_DOT"] = "1"  # 8-bit weights whatever the CPU
    seg["openvino int8 8-bit weights"] = Segmenter.open(
        int8.path, backend="openvino", threads=threads
    )
    os.environ["CIFRENET_EDGE_INT8_DOT"] = "0"  # the non-saturating variants
    seg["openvino int8 u8 inputs"] = Segmenter.open(int8.path, backend="openvino", threads=threads)
    seg["openvino int8 7-bit weights"] = Segmenter.open(
        _seven_bit_only(int8, tmp), backend="openvino", threads=threads
    )
    if before is None:
        del os.environ["CIFRENET_EDGE_INT8_DOT"]
    else:
        os.environ["CIFRENET_EDGE_INT8_DOT"] = before
    why_not = nncf_missing()
    if why_not:
        info.setdefault("refused", {})["nncf int8"] = why_not
    else:
        t1 = time.perf_counter()
        seg["nncf int8"] = NncfModel(
            fp32.path, _calibration_frames(calib, fp32), fp32.manifest, threads
        )
        info["nncf"] = {
            "version": seg["nncf int8"].version,
            "call": "nncf.quantize(ov_model, nncf.Dataset(frames), "
            "preset=QuantizationPreset.PERFORMANCE)",
            "quantize_s": round(time.perf_counter() - t1, 1),
        }


def _one_run(cands: dict, args, info) -> dict:
    """One interleaved timing of every candidate, and that run's ratios."""
    res = interleaved(cands, args.rounds)
    med = {k: v["median_ms"] for k, v in res.items()}
    # the faster FP32 end to end (ONNX Runtime ignores the AVX2 cap: then OpenVINO's only)
    fp32_e2e = "openvino fp32 (f32) predict"
    if not args.emulate_avx2 and med["toolkit fp32 predict"] < med[fp32_e2e]:
        fp32_e2e = "toolkit fp32 predict"
    fp32_compute = min(
        med[k] for k in ("onnxruntime fp32 infer", "openvino fp32 (f32) infer") if k in med
    )
    if args.emulate_avx2:  # ONNX Runtime ignores the cap: only OpenVINO FP32 is AVX2-honest
        fp32_compute = med["openvino fp32 (f32) infer"]
    headline = {
        "int8_end_to_end_speedup": med[fp32_e2e] / med["toolkit int8 predict"],
        "int8_compute_speedup": fp32_compute / med["openvino int8 (f32) infer"],
    }
    if "nncf int8 infer" in med:
        headline["nncf_compute_speedup"] = fp32_compute / med["nncf int8 infer"]
    ratios = {
        "openvino int8 u8 inputs over 7-bit weights (speed)": med[
            "openvino int8 7-bit weights infer"
        ]
        / med["openvino int8 u8 inputs infer"],
        "openvino int8 7-bit over 8-bit weights (speed)": med["openvino int8 8-bit weights infer"]
        / med["openvino int8 7-bit weights infer"],
        "toolkit int8 speedup over toolkit fp32 (end to end)": med["toolkit fp32 predict"]
        / med["toolkit int8 predict"],
        "openvino int8 over openvino fp32 (f32)": med["openvino fp32 (f32) infer"]
        / med["openvino int8 (f32) infer"],
        "onnxruntime int8 over onnxruntime fp32": med["onnxruntime fp32 infer"]
        / med["onnxruntime int8 infer"]
        if "onnxruntime int8 infer" in med
        else None,
        "openvino int8 over onnxruntime fp32": med["onnxruntime fp32 infer"]
        / med["openvino int8 (f32) infer"],
        "openvino int8 over nncf int8 (compute)": med["nncf int8 infer"]
        / med["openvino int8 (f32) infer"]
        if "nncf int8 infer" in med
        else None,
        "openvino int8 over openvino fp32 (default bf16)": med[
            "openvino fp32 (default precision) infer"
        ]
        / med["openvino int8 (f32) infer"]
        if "openvino fp32 (default precision) infer" in med
        else None,
    }
    return {
        "timings": res,
        "headline": headline,
        "ratios": ratios,
        "fp32_end_to_end_reference": fp32_e2e,
        "loadavg": os.getloadavg(),
    }


def prepare(tmp: Path, wh, weights=None, calib=None, info=None):
    """(FP32 export, INT8 export, calibration source) in ``tmp``: the probe model and 60
    synthetic scenes unless given; what was used goes into ``info``."""

    from cifrenet_edge.data.synthetic import make_scene
    from cifrenet_edge.export import export_onnx
    from cifrenet_edge.quantize import quantize_onnx

    info = {} if info is None else info
    if weights is None:
        from cifrenet_edge.model.linear_probe import make_probe_checkpoint

        weights = make_probe_checkpoint(tmp / "probe.pth")
        info["weights"] = "probe (BN re-estimated, ridge classifier; untrained backbone)"
    else:
        info["weights"] = str(weights)
    if calib is None:
        calib = tmp / "calib"
        calib.mkdir()
        for s in range(60):
            cv2.imwrite(str(calib / f"s{s:03d}.png"), make_scene(5000 + s, wh)[0])
        info["calib"] = "60 synthetic scenes (make_scene seeds 5000-5059)"
    t0 = time.perf_counter()
    fp32 = export_onnx(
        "cityscapes", weights=weights, res=wh, output=tmp / "m_fp32.onnx", quiet=True
    )
    # gates off: this measures speed; the quality gate is tested in tests/test_quantize.py
    int8 = quantize_onnx(
        fp32.path,
        calib=calib,
        output=tmp / "m_int8.onnx",
        gates={"min_agreement": 0.0, "min_class_agreement": 0.0},
        quiet=True,
    )
    info["prepare_s"] = round(time.perf_counter() - t0, 1)
    return fp32, int8, calib


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", default="640x360")
    ap.add_argument("--weights", default=None, help="trained checkpoint (default: probe model)")
    ap.add_argument("--calib", default=None, help="calibration frames (default: 60 synthetic)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs (median recorded)")
    ap.add_argument("--profile", action="store_true", help="OpenVINO per-node profiles")
    ap.add_argument("--threads", type=int, default=None, help="default: all cores")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--emulate-avx2", action="store_true", help="cap oneDNN (OpenVINO) at AVX2 first"
    )
    args = ap.parse_args(argv)
    if args.emulate_avx2:
        if "openvino" in sys.modules:
            raise SystemExit("--emulate-avx2 must be set before OpenVINO loads")
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"

    from cifrenet_edge.data.synthetic import make_scene
    from cifrenet_edge.errors import BackendUnavailableError
    from cifrenet_edge.presets import parse_resolution
    from cifrenet_edge.runtime import Segmenter

    wh = parse_resolution(args.res)
    from cifrenet_edge.runtime.cpu_int8 import int8_support

    probe = int8_support()
    info = {
        "machine": machine(),
        "res": list(wh),
        "rounds": args.rounds,
        "emulated_avx2": bool(args.emulate_avx2),
        "int8_probe": {"dot_product": probe.dot_product, "reason": probe.reason},
    }
    with tempfile.TemporaryDirectory(prefix="int8_bench_") as tmp:
        tmp = Path(tmp)
        fp32, int8, calib = prepare(tmp, wh, args.weights, args.calib, info)
        info["int8_agreement_vs_fp32"] = int8.parity["agreement"]  # Q/DQ in float
        info["int8_7bit_agreement_vs_fp32"] = int8.parity["variants"]["weights_7bit"]["agreement"]
        info["int8_u8_inputs_agreement_vs_fp32"] = int8.parity["variants"]["u8_inputs"]["agreement"]
        info["this_cpu_at_export"] = {
            k: int8.parity["this_cpu"].get(k) for k in ("backend", "weight_bits", "agreement")
        }
        info["ort_executed_graph"] = {
            "fp32": ort_executed_graph(fp32.path),
            "int8": ort_executed_graph(int8.path),
        }

        frame = make_scene(4242, wh)[0]
        x = None
        seg = {
            "toolkit fp32": Segmenter.open(fp32.path, threads=args.threads),
            "toolkit int8": Segmenter.open(int8.path, threads=args.threads),
        }
        for name, (path, backend) in {
            "onnxruntime fp32": (fp32.path, "onnxruntime"),
            "onnxruntime int8": (int8.path, "onnxruntime"),
            "openvino fp32 (f32)": (fp32.path, "openvino"),
            "openvino int8 (f32)": (int8.path, "openvino"),
        }.items():
            try:
                seg[name] = Segmenter.open(path, backend=backend, threads=args.threads)
            except BackendUnavailableError as exc:  # e.g. ORT INT8 where it would saturate
                info.setdefault("refused", {})[name] = str(exc)
        if args.emulate_avx2:  # the AVX2-honest FP32 end to end: OpenVINO under the same cap
            seg["openvino fp32 (f32)"].close()
            seg["openvino fp32 (f32)"] = Segmenter.open(
                fp32.path, backend="openvino", threads=args.threads
            )
        _open_variant_rows(seg, int8, fp32, calib, tmp, args.threads, info)
        info["toolkit_backends"] = {
            "fp32": seg["toolkit fp32"].backend.name,
            "int8": seg["toolkit int8"].backend.name,
            "int8_weight_bits": seg["toolkit int8"].backend.describe().get("int8_weight_bits"),
            "int8_variant": seg["toolkit int8"].backend.describe().get("int8_variant"),
            "int8_reason": seg["toolkit int8"].reason,
        }
        info["agreement_end_to_end"] = _agreements(seg, wh)
        from cifrenet_edge.preprocess import preprocess

        m = fp32.manifest
        x = preprocess(frame, wh, m.mean_bgr, m.scale)

        cands = {}
        for name in ("toolkit fp32", "toolkit int8", "openvino fp32 (f32)"):
            cands[name + " predict"] = (lambda s: lambda: s.predict(frame))(seg[name])
        for name, s in seg.items():
            if not name.startswith("toolkit"):
                cands[name + " infer"] = (lambda b: lambda: b.infer(x))(s.backend)
        if not args.emulate_avx2:  # (bf16 needs AVX-512: no such candidate under the cap)
            cands["openvino fp32 (default precision) infer"] = _openvino_default(
                fp32.path, x, args.threads, info
            )

        if args.profile:
            info["profile"] = _profiles(int8, fp32, x, info, args.threads)
        runs = [_one_run(cands, args, info) for _ in range(max(1, args.runs))]
        info["runs"] = runs
        res = runs[-1]["timings"]
        med = {k: v["median_ms"] for k, v in res.items()}
        info["timings"] = res
        info["headline"] = {
            k: float(np.median([r["headline"][k] for r in runs])) for k in runs[0]["headline"]
        }
        info["headline"].update(
            fp32_end_to_end_reference=runs[0]["fp32_end_to_end_reference"],
            int8_path=info["toolkit_backends"]["int8_reason"],
            int8_agreement_end_to_end=info["agreement_end_to_end"]["toolkit int8"],
            nncf_agreement_end_to_end=info["agreement_end_to_end"].get("nncf int8"),
            float_evaluated_reference_agreement=info["int8_agreement_vs_fp32"],
            runs=len(runs),
        )
        info["ratios"] = runs[-1]["ratios"]
        for s in seg.values():
            s.close()
    info["machine"]["loadavg_end"] = os.getloadavg()
    info["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = (
        Path(args.out)
        if args.out
        else HERE
        / "results"
        / (f"{socket.gethostname()}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    width = max(len(k) for k in med)
    for k, v in res.items():
        print(
            f"{k:<{width}}  {v['median_ms']:7.1f} ms  "
            f"(p10 {v['p10_ms']:.1f}, p90 {v['p90_ms']:.1f})"
        )
    for k, v in info["ratios"].items():
        print(f"{k}: {v:.2f}x" if v is not None else f"{k}: not run")
    for k, v in info["agreement_end_to_end"].items():
        print(f"agreement with toolkit fp32 (end to end, {AGREEMENT_FRAMES} scenes): {k}: {v:.4f}")
    print(f"headline: {json.dumps(info['headline'])}")
    print(f"backends chosen by the runtime: {info['toolkit_backends']}")
    print(f"wrote {out}")
    return info


if __name__ == "__main__":
    main()
