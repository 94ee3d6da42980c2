"""The NNCF peer and OpenVINO's per-node profile, for ``run.py``.

NNCF is OpenVINO's own post-training quantizer (what Ultralytics' OpenVINO INT8 export
uses). It is not a dependency of the toolkit; install it in a separate virtualenv so the
shared Python is not changed, and run the benchmark with that interpreter:

    python3 -m venv --system-site-packages /work/venv-nncf
    /work/venv-nncf/bin/pip install nncf
    PYTHONPATH=$PWD /work/venv-nncf/bin/python benchmarks/int8_cpu/run.py

Given the same FP32 ONNX and the same preprocessed calibration frames the toolkit
calibrated on, with its documented defaults and ``preset=QuantizationPreset.PERFORMANCE``
(symmetric weights and activations, its default for CPUs).
"""

from collections import defaultdict
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from cifrenet_edge.manifest import Manifest

OV_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


def nncf_missing() -> Optional[str]:
    """Why the NNCF row cannot run here, or None."""
    try:
        import nncf  # noqa: F401
    except ImportError as exc:
        return (
            f"nncf is not importable ({exc}): install it in a separate venv "
            "(python3 -m venv --system-site-packages /work/venv-nncf && "
            "/work/venv-nncf/bin/pip install nncf) and run this script with that python"
        )
    return None


class NncfModel:
    """NNCF's INT8 model compiled as the runtime compiles OpenVINO; predicts as Segmenter."""

    def __init__(self, fp32_onnx, frames: Sequence[np.ndarray], manifest: Manifest, threads):
        import nncf
        import openvino as ov
        from nncf import QuantizationPreset

        core = ov.Core()
        model = core.read_model(str(fp32_onnx))
        data = nncf.Dataset(list(frames))
        self.version = nncf.__version__
        self.quantized = nncf.quantize(model, data, preset=QuantizationPreset.PERFORMANCE)
        cfg = dict(OV_CONFIG)
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = int(threads)
        self.request = core.compile_model(self.quantized, "CPU", cfg).create_infer_request()
        self.wh = manifest.nominal_wh
        self.backend = self  # the benchmark times ``seg.backend.infer`` for every row
        self.mean, self.scale = manifest.mean_bgr, manifest.scale

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.request.infer({0: x})[0]

    def close(self) -> None:
        self.request = None

    def predict(self, frame: np.ndarray) -> np.ndarray:
        from cifrenet_edge.preprocess import preprocess
        from cifrenet_edge.runtime.postprocess import argmax_classes, resize_mask

        x = preprocess(frame, self.wh, self.mean, self.scale)
        small = argmax_classes(self.infer(x)[0])
        return resize_mask(small, (frame.shape[1], frame.shape[0]))


def profile(
    compile_fn: Callable[[Dict[str, Any]], Any], x: np.ndarray, runs: int = 5
) -> Dict[str, Any]:
    """OpenVINO's per-node profile (PERF_COUNT), summed by layer type and kernel.

    ``compile_fn(config)`` returns a compiled model. Reported: the last run's executed
    nodes by (type, kernel) with their share, the share in f32 kernels, and the five
    slowest nodes (the output reorder and the x8 Interpolate show up here).
    """
    compiled = compile_fn(dict(OV_CONFIG, PERF_COUNT=True))
    request = compiled.create_infer_request()
    for _ in range(runs):
        request.infer({0: x})
    rows = [p for p in request.profiling_info if p.status == p.Status.EXECUTED]
    by_kind: Dict[Tuple[str, str], float] = defaultdict(float)
    counts: Dict[Tuple[str, str], int] = defaultdict(int)
    for p in rows:
        by_kind[(p.node_type, p.exec_type)] += p.real_time.total_seconds() * 1e3
        counts[(p.node_type, p.exec_type)] += 1
    total = sum(by_kind.values()) or 1.0
    f32 = sum(v for (_, kernel), v in by_kind.items() if kernel.lower().endswith("f32"))
    slow = sorted(rows, key=lambda p: -p.real_time.total_seconds())[:5]
    return {
        "total_ms": total,
        "f32_share": f32 / total,
        "by_kernel": [
            {"node_type": k[0], "kernel": k[1], "nodes": counts[k], "ms": v, "share": v / total}
            for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])[:12]
        ],
        "slowest_nodes": [
            {
                "node": p.node_name,
                "type": p.node_type,
                "kernel": p.exec_type,
                "ms": p.real_time.total_seconds() * 1e3,
            }
            for p in slow
        ],
    }


def toolkit_int8_compiler(path, manifest: Manifest, variant: str, threads):
    """A ``compile_fn`` for ``profile`` that derives the runtime's variant as the backend does."""
    import openvino as ov

    from cifrenet_edge.runtime.backends.openvino import seven_bit_weights, u8_inputs

    def compile_fn(config):
        core = ov.Core()
        model = core.read_model(str(path))
        if variant == "u8_inputs":
            u8_inputs(model)
        elif variant == "weights_7bit":
            seven_bit_weights(model)
        if threads:
            config = dict(config, INFERENCE_NUM_THREADS=int(threads))
        return core.compile_model(model, "CPU", config)

    return compile_fn
