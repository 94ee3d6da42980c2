"""tests/gpu_checks.py (what benchmarks/run_gpu.sh runs on a lent GPU) in its dry run.

The same checks run on the simulated CUDA of ``cuda_sim`` with PyTorch on the CPU, so the
script that gets a few minutes of a real GPU is known to work before it gets them, and a
planted bug must make it fail loudly (exit 1, a FAILED line), never pass or skip.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from cifrenet_edge.runtime.backends import tensorrt as trt_backend

SCRIPT = Path(__file__).resolve().parent / "gpu_checks.py"


@pytest.fixture(scope="module")
def gpu_checks():
    spec = importlib.util.spec_from_file_location("gpu_checks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_checks"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_checks", None)


def _result(out: Path):
    (path,) = sorted(out.glob("gpu_checks_dryrun_*.json"))
    return json.loads(path.read_text())


def test_dry_run_passes_every_check_into_one_json_file(gpu_checks, tmp_path, capsys):
    assert gpu_checks.main(["--dry-run", "--out", str(tmp_path)]) == 0
    d = _result(tmp_path)
    assert d["schema"] == "cifrenet-edge/gpu-checks" and d["ok"] is True
    names = [c["name"] for c in d["checks"]]
    assert names == [n for n, _ in gpu_checks.CHECKS] + ["bench_torch_rows"]
    assert all(c["status"] == "ok" for c in d["checks"])
    by_name = {c["name"]: c["details"] for c in d["checks"]}
    assert by_name["tensorrt_backend_binding_api"]["execution_api"] == "execute_async_v2"
    assert by_name["tensorrt_backend_tensor_api"]["execution_api"] == "execute_async_v3"
    assert by_name["tensorrt_backend_close_racing_predict"]["closed"] == 4
    rows = by_name["bench_torch_rows"]["report"]["results"]
    assert [(r["backend"], r["precision"], r["status"]) for r in rows] == [("torch", "fp32", "ok")]
    assert "all checks passed" in capsys.readouterr().out


def test_a_planted_bug_fails_loudly(gpu_checks, tmp_path, capsys, monkeypatch):
    real = trt_backend.TensorRTBackend._set_shape

    def wrong_pointer(self, slot, shape):
        real(self, slot, shape)
        if self.caps.tensor_api:
            slot.context.set_tensor_address(self._io["input"]["name"], slot.d_out)

    monkeypatch.setattr(trt_backend.TensorRTBackend, "_set_shape", wrong_pointer)
    assert gpu_checks.main(["--dry-run", "--out", str(tmp_path)]) == 1
    d = _result(tmp_path)
    assert d["ok"] is False
    failed = {c["name"] for c in d["checks"] if c["status"] == "failed"}
    assert "tensorrt_backend_tensor_api" in failed and "cuda_wrapper" not in failed
    out = capsys.readouterr().out
    assert "FAILED  tensorrt_backend_tensor_api" in out and "CHECKS FAILED" in out


def test_a_run_cut_short_keeps_every_finished_result(gpu_checks, tmp_path, monkeypatch):
    """A timeout kills the process mid-check: the JSON already holds what finished."""

    def hangs(m, work):
        raise KeyboardInterrupt  # what SIGINT does mid-check; SIGTERM ends it just as abruptly

    monkeypatch.setattr(
        gpu_checks, "CHECKS", [("cuda_wrapper", gpu_checks.check_cuda_wrapper), ("hangs", hangs)]
    )
    with pytest.raises(KeyboardInterrupt):
        gpu_checks.main(["--dry-run", "--out", str(tmp_path)])
    d = _result(tmp_path)
    assert d["complete"] is False and d["ok"] is False and d["running"] == "hangs"
    assert [(c["name"], c["status"]) for c in d["checks"]] == [("cuda_wrapper", "ok")]
    assert not list(tmp_path.glob("*.tmp"))  # renamed into place, never half-written


def test_run_gpu_sh_dry_run(tmp_path):
    """The script itself, as CI runs it: stage 1 on the simulated CUDA, exit 0, one JSON."""
    import os
    import subprocess

    root = SCRIPT.parents[1]
    env = dict(os.environ, OUT=str(tmp_path), PYTHONPATH=str(root))
    p = subprocess.run(
        ["bash", str(root / "benchmarks" / "run_gpu.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    d = _result(tmp_path)
    assert d["complete"] is True and d["ok"] is True
    graph = next(c for c in d["checks"] if c["name"] == "tensorrt_backend_cuda_graph")
    assert set(graph["details"]) == {"8.6.1", "10.16"}
