"""The device check: each incompatible pair is one row with both sides and the fix.

Every row is tested with faked facts (``check_device`` is a pure function of ``Facts``);
the callers (``export --format engine``, the device builder, ``Segmenter.open``) are tested
to run it before any work, on the TensorRT stand-in with a CUDA library that fails the way
cuda-python 12.x fails without a driver.
"""

import json
from pathlib import Path

import pytest
from support.trt_cases import engine_files, onnx_with_manifest
from support.trt_standin import Scenario, StandIn
from typer.testing import CliRunner

from cifrenet_edge.device import check as dc
from cifrenet_edge.device.check import Facts, check_device, require
from cifrenet_edge.errors import BackendUnavailableError
from cifrenet_edge.trt import api, rules

PASCAL = dict(gpu="NVIDIA GeForce GTX 1080 Ti", compute_capability="6.1")


def _rows(**facts):
    return check_device(Facts(python=facts.pop("python", (3, 10)), **facts))


def _only(rows, check):
    found = [r for r in rows if r.check == check]
    assert len(found) == 1, [r.check for r in rows]
    row = found[0]
    assert "\n" not in row.line and row.source
    return row


# ------------------------------------------------------------------- TensorRT vs this GPU
def test_tensorrt_10_on_pascal_is_refused_naming_the_86_install():
    """The support-matrix rules of trt/rules.py (Pascal ends at TensorRT 8.6.x)."""
    rows = _rows(tensorrt="10.3.0", driver_cuda="12.2", cuda_python="12.6.2", **PASCAL)
    errors = [r for r in rows if r.check.startswith("tensorrt.") and r.severity == "error"]
    assert errors, "TensorRT 10.3 on compute capability 6.1 was not refused"
    line = errors[0].line
    assert "10.3" in line and "6.1" in line and "8.6" in line
    assert not [
        r
        for r in _rows(tensorrt="8.6.1", driver_cuda="12.2", **PASCAL)
        if r.check.startswith("tensorrt.")
    ]


def test_every_hardware_rule_of_the_table_reaches_the_check(monkeypatch):
    """The check asks the rule table, so a support-matrix rule there becomes a row here."""
    rule = rules.Rule(
        "hw.test-matrix", (10, 0, 0), None, "error", "hardware",
        "no kernels for this GPU", "install the TensorRT of its generation", "a test's table",
    )  # fmt: skip
    monkeypatch.setattr(rules, "RULES", (*rules.RULES, rule))
    monkeypatch.setitem(
        rules.CHECKS,
        rule.id,
        lambda c: f"cc {c.compute_capability}" if c.compute_capability == "6.1" else None,
    )
    row = _only(_rows(tensorrt="10.3.0", driver_cuda="12.2", **PASCAL), "tensorrt.hw.test-matrix")
    assert row.severity == "error" and row.source == "a test's table"
    assert (
        "TensorRT 10.3.0" in row.line and "GTX 1080 Ti" in row.line and "its generation" in row.line
    )
    assert not [
        r for r in _rows(tensorrt="8.6.1", driver_cuda="12.2", **PASCAL) if "test-matrix" in r.check
    ]


def test_dla_where_the_device_has_none_or_the_tensorrt_has_none():
    desk = _rows(tensorrt="8.6.1", driver_cuda="12.2", dla_core=0, dla_cores=0, **PASCAL)
    row = _only(desk, "tensorrt.dla.no-core")
    assert row.severity == "error" and "--dla-core 0" in row.line and "0 DLA cores" in row.line
    orin = dict(gpu="Orin", compute_capability="8.7", driver_cuda="13.0", l4t="38.2.0")
    row = _only(
        _rows(tensorrt="11.1.0", dla_core=0, dla_cores=2, **orin), "tensorrt.dla.unsupported"
    )
    assert row.severity == "error" and "11.1.0" in row.line
    assert not [
        r
        for r in _rows(tensorrt="10.3.0", dla_core=0, dla_cores=2, **orin)
        if "dla" in r.check and r.severity == "error" and "no-core" in r.check
    ]


# ------------------------------------------------------------------------ CUDA and driver
def test_cuda_python_newer_than_the_driver():
    row = _only(
        _rows(tensorrt="8.5.2", cuda_python="12.6.2", driver_cuda="11.4"), "cuda-python.driver"
    )
    assert row.severity == "error"
    assert (
        "cuda-python 12.6.2" in row.line
        and "CUDA 11.4" in row.line
        and "'cuda-python>=11.8,<12'" in row.line
    )
    with_pycuda = _rows(tensorrt="8.5.2", cuda_python="12.6.2", driver_cuda="11.4", pycuda="2022.2")
    assert _only(with_pycuda, "cuda-python.driver").severity == "warning"  # pycuda is tried next
    assert not _rows(tensorrt="10.3.0", cuda_python="12.6.2", driver_cuda="13.0", **PASCAL)[1:]
    assert "cuda-python.driver" not in [
        r.check for r in _rows(cuda_python="12.6.2", driver_cuda="13.0")
    ]


def test_no_driver_at_all():
    row = _only(_rows(tensorrt="10.3.0", cuda_python="12.6.2"), "driver.missing")
    assert row.severity == "error" and "no NVIDIA driver" in row.line
    assert "TensorRT 10.3.0" in row.line and "device='cpu'" in row.line
    assert _only(_rows(cuda_python="13.4.4"), "driver.missing").severity == "warning"
    assert _rows() == []  # a CPU machine with nothing for a GPU: no mismatch


def test_python38_without_a_cuda_library_is_told_pycuda_or_cuda11():
    """cuda-python 12.4+ has no Python 3.8 wheels, but 11.8.2 and 12.3.0 do (pip resolves
    `cuda-python>=11.8,<12` on cp38 aarch64 to cuda_python-11.8.2-cp38; 12.3.0 imports on
    Python 3.8.18 and, without a driver, raises like 12.6.2): not "needs Python >= 3.9"."""
    row = _only(_rows(python=(3, 8), tensorrt="8.5.2", driver_cuda="11.4"), "cuda-python.python")
    assert row.severity == "error" and "Python 3.8" in row.line and "pycuda" in row.line
    assert ">= 3.9" not in row.line and "cuda11" in row.line


def test_python38_with_cuda_python_12_is_the_driver_row_alone():
    """cuda-python 12.3 installed on Python 3.8 under JetPack 5's CUDA 11.4 driver: the one
    cause is the CUDA major (fix: cuda11 or pycuda), not the Python version."""
    rows = _rows(python=(3, 8), tensorrt="8.5.2", cuda_python="12.3.0", driver_cuda="11.4")
    assert not [r for r in rows if r.check == "cuda-python.python"], [r.line for r in rows]
    row = _only(rows, "cuda-python.driver")
    assert row.severity == "error" and "'cuda-python>=11.8,<12'" in row.line
    ok = _rows(python=(3, 8), tensorrt="8.5.2", driver_cuda="11.4", pycuda="2022.2", l4t="35.4.1")
    assert ok == []
    row = _only(_rows(tensorrt="10.3.0", driver_cuda="12.6"), "cuda.no-library")
    assert "'cuda-python>=12.6,<13'" in row.line and "pycuda" in row.line


# ------------------------------------------------------------------------- ONNX Runtime
def test_onnxruntime_gpu_cuda13_against_the_driver_and_pascal():
    row = _only(_rows(onnxruntime_gpu="1.27.0", driver_cuda="12.6"), "onnxruntime-gpu.driver")
    assert row.severity == "error" and "CUDA 13" in row.line and "12.6" in row.line
    assert "'onnxruntime-gpu<1.27'" in row.line
    row = _only(
        _rows(onnxruntime_gpu="1.28.1", driver_cuda="13.0", **PASCAL), "onnxruntime-gpu.pascal"
    )
    assert "GTX 1080 Ti" in row.line and "6.1" in row.line and "<=1.26" in row.line
    assert _rows(onnxruntime_gpu="1.26.0", driver_cuda="12.2", **PASCAL) == []
    assert (
        _rows(onnxruntime_gpu="1.28.0", driver_cuda="13.0", gpu="H200", compute_capability="9.0")
        == []
    )


def test_onnxruntime_and_onnxruntime_gpu_together():
    row = _only(
        _rows(onnxruntime="1.19.2", onnxruntime_gpu="1.19.2", driver_cuda="12.2"),
        "onnxruntime.both",
    )
    assert row.severity == "error" and "pip uninstall -y onnxruntime onnxruntime-gpu" in row.line
    assert row.scopes == (dc.ORT_GPU,)


# ------------------------------------------------------------------------------ JetPack
def test_jetpack_against_the_tensorrt_found():
    xavier = dict(gpu="Xavier", compute_capability="7.2", driver_cuda="11.4", pycuda="2022.2")
    row = _only(_rows(python=(3, 8), tensorrt="10.3.0", l4t="35.4.1", **xavier), "jetpack.tensorrt")
    assert row.severity == "error" and "JetPack 5" in row.line and "R35.4.1" in row.line
    assert "8.5.2" in row.line and "10.3.0" in row.line and "python3-libnvinfer" in row.line
    assert _rows(python=(3, 8), tensorrt="8.5.2", l4t="35.4.1", **xavier) == []
    orin = dict(gpu="Orin", compute_capability="8.7", driver_cuda="12.6", cuda_python="12.6.2")
    assert _rows(tensorrt="10.3.0", l4t="36.4.3", **orin) == []
    row = _only(_rows(l4t="36.4.3", **orin), "jetpack.no-tensorrt")
    assert row.severity == "warning" and "--system-site-packages" in row.line


def test_nv_tegra_release_is_read(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text(
        "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
        "DATE: Tue Aug  1 19:57:35 UTC 2023\n"
    )
    assert dc.jetson_l4t(f) == "35.4.1"
    assert dc.jetson_l4t(tmp_path / "absent") is None


# ------------------------------------------------------------------- require and gather
def test_require_raises_its_scope_errors_in_one_line():
    facts = Facts(
        python=(3, 10),
        tensorrt="10.3.0",
        onnxruntime="1.19.2",
        onnxruntime_gpu="1.19.2",
        cuda_python="12.6.2",
    )
    with pytest.raises(BackendUnavailableError) as err:
        require(dc.ENGINE, facts)
    msg = str(err.value)
    assert "no NVIDIA driver" in msg and "info --env" in msg and "\n" not in msg
    assert "onnxruntime-gpu 1.19.2 are both" not in msg  # not an engine's concern
    assert require(dc.ENGINE, facts._replace(driver_cuda="12.6", cuda_library="cuda-python")) == []


def test_facts_are_gathered_on_a_machine_without_a_gpu():
    facts = dc.gather_facts()
    assert facts.python >= (3, 8)
    if not Path("/etc/nv_tegra_release").exists():
        assert facts.l4t is None and facts.dla_cores == 0
    check_device(facts)  # never raises


# --------------------------------------------------------------- before any work: callers
def _fake_machine(monkeypatch, driver="11.4", cc="6.1", name="NVIDIA GeForce GTX 1080 Ti", **dists):
    """This process sees a driver (through libcuda) and these installed distributions."""
    monkeypatch.setattr(dc, "libcuda_facts", lambda: (driver, cc, name))
    monkeypatch.setattr(dc, "jetson_l4t", lambda path=None: None)
    names = {k.replace("_", "-"): v for k, v in dists.items()}
    monkeypatch.setattr(dc, "_dist", lambda *ns: next((names[n] for n in ns if n in names), None))


def _dlopen_fails():
    # What cuda-python 11.8.7 / 12.6.2 do where libcuda.so.1 is not the one they need
    raise RuntimeError("Failed to dlopen libcuda.so.1")


def test_builder_preflight_names_the_mismatch_not_a_raw_error(monkeypatch):
    from cifrenet_edge.trt import build

    monkeypatch.setattr(api, "import_tensorrt", StandIn("8.5.2", Scenario("8.5.2")).module)
    monkeypatch.setattr(build, "_open_cuda", _dlopen_fails)
    _fake_machine(monkeypatch, cuda_python="12.6.2")
    with pytest.raises(BackendUnavailableError) as err:
        build.preflight()
    msg = str(err.value)
    assert "cuda-python 12.6.2" in msg and "CUDA 11.4" in msg and "'cuda-python>=11.8,<12'" in msg
    _fake_machine(monkeypatch, pycuda="2022.2")  # nothing explains it: one line all the same
    with pytest.raises(BackendUnavailableError, match=r"RuntimeError: Failed to dlopen libcuda"):
        build.preflight()


def test_device_builder_checks_before_reading_the_model(monkeypatch, tmp_path, tiny_onnx, capsys):
    from cifrenet_edge.trt import build

    src = onnx_with_manifest(tmp_path, tiny_onnx, "fp32")
    monkeypatch.setattr(api, "import_tensorrt", StandIn("10.3.0", Scenario("10.3.0")).module)
    monkeypatch.setattr(build, "_open_cuda", _dlopen_fails)
    _fake_machine(
        monkeypatch, driver=None, cc=None, name=None, tensorrt="10.3.0", cuda_python="12.6.2"
    )
    assert build.main([str(src), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no NVIDIA driver") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, src.name + ".json"])


def test_export_engine_runs_the_device_check_before_exporting(monkeypatch, tmp_path):
    from cifrenet_edge.export import OnnxOptions, export
    from cifrenet_edge.export import stages as export_pipeline
    from cifrenet_edge.trt import build

    monkeypatch.setattr(api, "import_tensorrt", StandIn("8.5.2", Scenario("8.5.2")).module)
    monkeypatch.setattr(build, "_open_cuda", _dlopen_fails)
    _fake_machine(monkeypatch, driver="11.4", cc="7.2", name="Xavier", cuda_python="12.6.2")

    def no_export(*a, **k):
        raise AssertionError("the export started")

    monkeypatch.setattr(export_pipeline, "export_onnx", no_export)
    with pytest.raises(BackendUnavailableError, match=r"cuda-python 12\.6\.2 is built for CUDA 12"):
        export(
            OnnxOptions(target="trt8.5"), format="engine", output=tmp_path / "m.engine", quiet=True
        )
    assert list(tmp_path.iterdir()) == []


def test_segmenter_open_engine_runs_the_device_check(monkeypatch, tmp_path):
    from cifrenet_edge import Segmenter
    from cifrenet_edge.runtime.backends import tensorrt as trt_backend

    eng = engine_files(tmp_path, "8.5.2", False)
    monkeypatch.setattr(api, "import_tensorrt", StandIn("8.5.2", Scenario("8.5.2")).module)
    monkeypatch.setattr(trt_backend, "_open_cuda", lambda index: _dlopen_fails())
    _fake_machine(monkeypatch, driver="11.4", cc="7.2", name="Xavier")
    monkeypatch.setattr(dc, "python_version", lambda: (3, 8))
    with pytest.raises(BackendUnavailableError) as err:
        Segmenter.open(eng)
    assert "Python 3.8" in str(err.value) and "pycuda" in str(err.value)


def test_segmenter_open_on_onnxruntime_gpu_runs_the_device_check(monkeypatch, small_fp32_onnx):
    from cifrenet_edge import Segmenter

    _fake_machine(monkeypatch, driver="12.2", onnxruntime="1.19.2", onnxruntime_gpu="1.19.2")
    with pytest.raises(BackendUnavailableError, match="are both installed"):
        Segmenter.open(small_fp32_onnx, device="cuda")
    _fake_machine(monkeypatch, driver="12.2", onnxruntime_gpu="1.27.0")
    with pytest.raises(BackendUnavailableError, match="built for CUDA 13"):
        Segmenter.open(small_fp32_onnx, device="tensorrt")


def test_info_env_shows_the_rows_and_gives_them_as_data(monkeypatch):
    from cifrenet_edge.cli import app

    _fake_machine(monkeypatch, driver="11.4", onnxruntime="1.19.2", onnxruntime_gpu="1.27.0")
    out = CliRunner().invoke(app, ["info", "--env", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["checks"]
    checks = {r["check"]: r for r in rows}
    assert {"onnxruntime.both", "onnxruntime-gpu.driver", "onnxruntime-gpu.pascal"} <= set(checks)
    assert all(set(r) == {"check", "severity", "scopes", "line", "source"} for r in rows)
    text = CliRunner().invoke(app, ["info", "--env"]).output
    assert "Device check" in text and "onnxruntime-gpu 1.27.0 is built for CUDA 13" in " ".join(
        text.split()
    )
    _fake_machine(monkeypatch, driver=None, cc=None, name=None)
    text = CliRunner().invoke(app, ["info", "--env"]).output
    assert "no known mismatch" in text


def test_device_check_is_python38():
    from conftest import assert_python38

    root = Path(dc.__file__).resolve().parents[1]
    names = ("device/check.py", "device/cli.py", "device/env.py", "device/__init__.py")
    names += ("data/calibration.py", "__main__.py")
    assert_python38([root / n for n in names] + [root.parent / "device" / "setup.py"])
