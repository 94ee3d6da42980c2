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
from support.trt_sim import SimGpu, make_onnx

from cifrenet_edge import bench
from cifrenet_edge.bench import models as bench_models
from cifrenet_edge.bench import rows as bench_rows
from cifrenet_edge.bench import trtexec as bench_trtexec

SUMMARY = (
    "[I] GPU Compute Time: min = 1.0 ms, max = 2.0 ms, mean = 1.5 ms, median = 1.5 ms, "
    "percentile(90%) = 1.9 ms, percentile(95%) = 2.0 ms, percentile(99%) = 2.0 ms"
)

# trtexec's option parsing per release, from samples/common/sampleOptions.{h,cpp} (8.5.2,
# v8.6.1, v10.3.0, v10.16: InferenceOptions defaults overlap{true} skipTransfers{false}
# spin{false} graph{false}; v11.0, v11.1: overlap{true} includeTransfers{false} spin{true}
# graph{true}, --noDataTransfers/--useSpinWait/--useCudaGraph kept as no-ops) and
# samples/trtexec/trtexec.cpp (an option left unparsed: "Unknown option", exit failure; the
# banner "&&&& RUNNING TensorRT.trtexec [TensorRT vN]" with N = NV_TENSORRT_VERSION).
FAKE_TRTEXEC = r"""#!/usr/bin/env python3
import json, sys
from pathlib import Path
here = Path(__file__).resolve().parent
version = (here / "version.txt").read_text().strip()
major, minor, patch = (list(map(int, version.split("."))) + [0, 0])[:3]
code = major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch
print("&&&& RUNNING TensorRT.trtexec [TensorRT v%d] # trtexec %s" % (code, " ".join(sys.argv[1:])))
new = major >= 11
cfg = {"overlap": True, "transfers": True, "spin": new, "graph": new}
if new:
    cfg["transfers"] = False
valued = ("--loadEngine", "--iterations", "--warmUp", "--duration", "--avgRuns", "--shapes",
          "--useDLACore")
unknown = []
for arg in sys.argv[1:]:
    name = arg.split("=", 1)[0]
    if name in valued:
        continue
    if name == "--exposeDMA":
        cfg["overlap"] = False
    elif name == "--noDataTransfers":
        cfg["transfers"] = False if not new else cfg["transfers"]
    elif name == "--useSpinWait":
        cfg["spin"] = True
    elif name == "--useCudaGraph":
        cfg["graph"] = True
    elif new and name == "--includeDataTransfers":
        cfg["transfers"] = True
    elif new and name == "--noSpinWait":
        cfg["spin"] = False
    elif new and name == "--noCudaGraph":
        cfg["graph"] = False
    else:
        unknown.append(name)
log = here.parent / "trtexec_calls.jsonl"
with open(log, "a") as f:
    f.write(json.dumps({"args": sys.argv[1:], "effective": cfg, "unknown": unknown}) + "\n")
if unknown:
    for name in unknown:
        print("[E] Unknown option: %s" % name)
    print("&&&& FAILED TensorRT.trtexec")
    sys.exit(1)
print("[I] Throughput: 400 qps")
print(SUMMARY_LINE)
""".replace("SUMMARY_LINE", repr(SUMMARY))


@pytest.fixture
def fake_trtexec(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "trtexec"
    exe.parent.mkdir()
    exe.write_text(FAKE_TRTEXEC)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    (exe.parent / "version.txt").write_text("10.3.0")
    log = tmp_path / "trtexec_calls.jsonl"
    # patched where they are looked up (the bench package's submodules)
    monkeypatch.setattr(bench_trtexec, "find_trtexec", lambda: str(exe))

    def calls(full=False):
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return entries if full else [e["args"] for e in entries]

    calls.version = lambda v: (exe.parent / "version.txt").write_text(v)
    return calls


def _rows(g: SimGpu, eng: Path, input_shape, x):
    with g.installed():
        b = g.open(eng, input_shape=input_shape)
        row = bench_rows._Row(
            bench.BenchResult(
                "tensorrt",
                "fp32",
                (input_shape[3], input_shape[2]),
                int(input_shape[0]),
                model=str(eng),
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


@pytest.mark.parametrize("version", ["8.5.2", "8.6.1", "10.3.0", "10.16", "11.1"])
def test_trtexec_times_what_our_loop_times_on_every_release(version, fake_trtexec, tmp_path):
    """Depth 1, copies included, spinning, graphs only on the graph row: per release."""
    fake_trtexec.version(version)
    g = SimGpu(version, "13.4.4")
    onnx = make_onnx(tmp_path / "s.onnx", (1, 3, 64, 128))
    eng = g.write_engine(tmp_path, onnx, (1, 3, 64, 128))
    rows = _rows(g, eng, (1, 3, 64, 128), np.zeros((1, 3, 64, 128), np.float32))
    # 8.5+ capture execute_async_v3 (trtexec 8.5.2/8.6.1 do): a graph row on every release
    assert [(r.cuda_graph, r.status) for r in rows] == [(False, "ok"), (True, "ok")]
    assert [r.trtexec["status"] for r in rows] == ["ok", "ok"], rows[0].trtexec
    for r, call in zip(rows, fake_trtexec(full=True)):
        assert call["unknown"] == []
        assert call["effective"] == {
            "overlap": False,  # --exposeDMA: one query in flight, as our loop
            "transfers": True,  # H2D and D2H timed, as our loop
            "spin": True,  # cudaStreamSynchronize under cudaDeviceScheduleAuto spins
            "graph": r.cuda_graph,
        }


def test_trtexec_of_another_release_is_reported_not_timed(fake_trtexec, tmp_path):
    fake_trtexec.version("11.1")
    g = SimGpu("10.16", "13.4.4")
    onnx = make_onnx(tmp_path / "s.onnx", (1, 3, 64, 128))
    eng = g.write_engine(tmp_path, onnx, (1, 3, 64, 128))
    rows = _rows(g, eng, (1, 3, 64, 128), np.zeros((1, 3, 64, 128), np.float32))
    for r in rows:
        assert r.trtexec["status"] == "failed"
        assert "TensorRT 11.x" in r.trtexec["reason"] and "10.16" in r.trtexec["reason"]


def test_trtexec_throughput_is_queries_and_images_per_second_apart(fake_trtexec, tmp_path):
    """trtexec's qps counts queries; at batch 2 each query is two images."""
    g = SimGpu("10.16", "13.4.4")
    fake_trtexec.version("10.16")
    onnx = make_onnx(tmp_path / "b.onnx", (2, 3, 64, 128))
    eng = g.write_engine(tmp_path, onnx, (2, 3, 64, 128))
    rows = _rows(g, eng, (2, 3, 64, 128), np.zeros((2, 3, 64, 128), np.float32))
    for r in rows:
        assert r.trtexec["throughput_qps"] == pytest.approx(400.0)
        assert r.trtexec["throughput_images_per_s"] == pytest.approx(800.0)
        assert r.trtexec["batch"] == 2 and r.trtexec["queries_in_flight"] == 1


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
    from support.trt_standin import _manifest

    from cifrenet_edge.manifest import Manifest

    m = Manifest.from_dict(dict(_manifest("fp32"), kind="torch"))
    assert bench_models._model_fits(Path("m.pth"), m, "torch", "fp16") is None
    assert "FP32 weights" in bench_models._model_fits(Path("m.pth"), m, "torch", "int8")
    onnx = Manifest.from_dict(_manifest("fp32"))
    assert "FP32 weights" in bench_models._model_fits(Path("m.onnx"), onnx, "onnxruntime", "fp16")


@pytest.mark.parametrize("cuda_python", ["11.8.7", "12.6.2.post1", "13.4.4"])
def test_a_machine_without_a_driver_gives_a_skipped_row_with_the_reason(
    cuda_python, tmp_path, monkeypatch
):
    """cuda-python 11.8/12.x raise RuntimeError there (13.x: error 35): skipped, not failed."""
    from support.cuda_sim import SimCudart

    from cifrenet_edge.trt import api
    from cifrenet_edge.trt import cuda as cuda_mod

    g = SimGpu("10.3.0", "13.4.4")
    onnx = make_onnx(tmp_path / "s.onnx", (1, 3, 64, 128))
    eng = g.write_engine(tmp_path, onnx, (1, 3, 64, 128))
    monkeypatch.setattr(api, "import_tensorrt", lambda: g.trt)
    monkeypatch.setattr(cuda_mod, "import_cudart", lambda: SimCudart(cuda_python, driver_version=0))
    tried = []

    def no_pycuda(dev):
        tried.append(dev)
        raise ImportError("No module named 'pycuda'")

    monkeypatch.setattr(cuda_mod, "PyCuda", no_pycuda)
    prepared = bench_models.Prepared(engines={"fp32": eng})
    (row,) = bench_rows._open_rows(
        [("tensorrt", "fp32")], prepared, (128, 64), 1, None, "cityscapes", lambda m: None
    )
    r = row.result
    assert r.status == "skipped", r.reason
    assert "no NVIDIA driver or GPU here" in r.reason and "\n" not in r.reason
    assert tried == [0]  # the pycuda fallback was tried
