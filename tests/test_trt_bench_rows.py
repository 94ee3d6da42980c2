"""bench's TensorRT rows on a simulated GPU: the trtexec cross-check's command line.

The engines come from ``trt_sim`` (strict stand-in TensorRT, simulated CUDA, engines that
compute with ONNX Runtime); trtexec is a small script that records its arguments and prints
the one line of a performance summary the parser needs, so the command bench builds is what
is checked. The throughput definition is checked in ``test_trt_compute.py``.
"""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from trt_sim import SimGpu, make_onnx

from cifrenet_edge import bench
from cifrenet_edge.bench import models as bench_models
from cifrenet_edge.bench import rows as bench_rows
from cifrenet_edge.bench import trtexec as bench_trtexec

SUMMARY = (
    "[I] GPU Compute Time: min = 1.0 ms, max = 2.0 ms, mean = 1.5 ms, median = 1.5 ms, "
    "percentile(90%) = 1.9 ms, percentile(95%) = 2.0 ms, percentile(99%) = 2.0 ms"
)


@pytest.fixture
def fake_trtexec(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "trtexec"
    exe.parent.mkdir()
    log = tmp_path / "trtexec_calls.jsonl"
    exe.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"print({SUMMARY!r})\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    # patched where they are looked up (the bench package's submodules)
    monkeypatch.setattr(bench_trtexec, "find_trtexec", lambda: str(exe))
    monkeypatch.setattr(bench_rows, "_trt_major", lambda: 10)  # rows with and without graphs

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()]

    return calls


def _rows(g: SimGpu, eng: Path, input_shape, x):
    with g.installed():
        b = g.open(eng, input_shape=input_shape)
        row = bench_rows._Row(
            bench.BenchResult(
                "tensorrt", "fp32", (input_shape[3], input_shape[2]), 1, model=str(eng)
            ),
            type("Seg", (), {"backend": b})(),
        )
        try:
            return bench_rows._tensorrt_rows(
                row, iters=3, seconds=None, warmup=1, use_trtexec=True, x=x
            )
        finally:
            b.close()


def test_dynamic_engine_is_timed_by_trtexec_at_our_shape(fake_trtexec, tmp_path):
    g = SimGpu("10.3.0", "13.4.4")
    onnx = make_onnx(tmp_path / "d.onnx", dynamic=True)
    dyn = {"min": [32, 16], "opt": [128, 64], "max": [256, 128], "batch": [1, 1, 1]}
    eng = g.write_engine(tmp_path, onnx, (1, 3, 64, 128), dynamic=dyn)
    x = np.zeros((1, 3, 96, 192), np.float32)
    rows = _rows(g, eng, (1, 3, 96, 192), x)
    assert [r.status for r in rows] == ["ok", "ok"]
    assert all(r.trtexec["status"] == "ok" for r in rows)
    calls = fake_trtexec()
    assert len(calls) == 2
    for args in calls:
        # without it trtexec sets each dynamic dimension to 1: outside the profile
        assert "--shapes=input:1x3x96x192" in args
    assert "--useCudaGraph" in calls[1] and "--useCudaGraph" not in calls[0]


def test_static_engine_needs_no_shapes_and_dla_engine_names_its_core(fake_trtexec, tmp_path):
    g = SimGpu("10.3.0", "13.4.4", dla_cores=2)
    onnx = make_onnx(tmp_path / "s.onnx", (1, 3, 64, 128))
    eng = g.write_engine(tmp_path, onnx, (1, 3, 64, 128))
    m = json.loads(Path(str(eng) + ".json").read_text())
    m["engine"]["dla_core"] = 1
    Path(str(eng) + ".json").write_text(json.dumps(m))
    rows = _rows(g, eng, (1, 3, 64, 128), np.zeros((1, 3, 64, 128), np.float32))
    assert [r.status for r in rows] == ["ok", "ok"]
    for args in fake_trtexec():
        assert "--useDLACore=1" in args
        assert not any(a.startswith("--shapes") for a in args)
    assert os.environ.get("PATH")  # the fake is found through find_trtexec, not the PATH


def test_a_checkpoint_gives_pytorch_fp16_rows_where_cuda_is():
    """bench --model ckpt.pth --backend torch --precision fp16: the paper's GPU setting."""
    m = {"kind": "torch", "precision": "fp32"}
    assert bench_models._model_fits(Path("m.pth"), m, "torch", "fp16") is None
    assert "FP32 weights" in bench_models._model_fits(Path("m.pth"), m, "torch", "int8")
    onnx = {"kind": "onnx", "precision": "fp32"}
    assert "FP32 weights" in bench_models._model_fits(Path("m.onnx"), onnx, "onnxruntime", "fp16")
