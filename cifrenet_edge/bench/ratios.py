"""The issue's target ratios, each computed from two rows of the same run."""

from typing import List, Optional, Sequence

from .report import BenchResult, Ratio


def _find(
    results: Sequence[BenchResult], backend: str, precision: str, wh
) -> Optional[BenchResult]:
    for r in results:
        if (r.backend, r.precision, tuple(r.resolution)) == (backend, precision, tuple(wh)) and (
            r.status == "ok" and r.cuda_graph in (None, True)
        ):
            return r
    return None


def compute_ratios(results: Sequence[BenchResult]) -> List[Ratio]:
    """The issue's targets, each from two rows of this run (median latencies)."""
    out: List[Ratio] = []
    for wh in list(dict.fromkeys(tuple(r.resolution) for r in results)):
        ort = _find(results, "onnxruntime", "fp32", wh)
        bare = _find(results, "onnxruntime-bare", "fp32", wh)
        torch_r = _find(results, "torch", "fp32", wh)
        if ort and bare and ort.compute and bare.compute:
            v = ort.compute.median_ms / bare.compute.median_ms
            out.append(
                Ratio(
                    "ort_overhead",
                    "toolkit ONNX Runtime FP32 compute / bare InferenceSession.run (median)",
                    v,
                    "<= 1.10",
                    v <= 1.10,
                    wh,
                )
            )
        if ort and ort.compute and ort.end_to_end:
            v = ort.end_to_end.median_ms / ort.compute.median_ms
            tgt = wh == (640, 360)
            out.append(
                Ratio(
                    "e2e_over_compute",
                    "ONNX Runtime FP32 end-to-end / compute (median)",
                    v,
                    "<= 1.15" if tgt else None,
                    (v <= 1.15) if tgt else None,
                    wh,
                )
            )
        if ort and torch_r and ort.compute and torch_r.compute:
            v = torch_r.compute.median_ms / ort.compute.median_ms
            out.append(
                Ratio(
                    "ort_vs_torch",
                    "ONNX Runtime FP32 speed-up over PyTorch eager FP32 (compute median)",
                    v,
                    ">= 2.0",
                    v >= 2.0,
                    wh,
                )
            )
        for b in ("onnxruntime", "openvino", "tensorrt"):
            f, q = _find(results, b, "fp32", wh), _find(results, b, "int8", wh)
            if f and q and f.compute and q.compute:
                v = f.compute.median_ms / q.compute.median_ms
                gpu = b == "tensorrt"
                out.append(
                    Ratio(
                        f"int8_speedup_{b}",
                        f"{b} INT8 speed-up over FP32 (compute median)",
                        v,
                        ">= 2.0" if gpu else None,
                        (v >= 2.0) if gpu else None,
                        wh,
                    )
                )
        t = _find(results, "tensorrt", "fp32", wh)
        if t and t.compute and wh == (640, 360):
            from ..model.paper import PAPER_FPS

            v = t.compute.fps / PAPER_FPS[(640, 360)]
            out.append(
                Ratio(
                    "trt_fp32_vs_paper",
                    "TensorRT FP32 FPS (GPU Compute Time) / paper "
                    "62.5 FPS (target on a GTX 1080 Ti)",
                    v,
                    ">= 5.0",
                    v >= 5.0,
                    wh,
                )
            )
    return out
