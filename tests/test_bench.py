"""bench: statistics, interleaving, the JSON schema, rendering, bad inputs, one real tiny run.

Timings are never asserted: this machine is shared, and speed targets live in benchmarks/.
"""

import contextlib
import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from thresholds import check
from typer.testing import CliRunner

from cifrenet_edge import bench as B
from cifrenet_edge.cli import app, main
from cifrenet_edge.errors import ConfigError

TINY = (128, 64)


# --------------------------------------------------------------------------- statistics


def test_summarize_matches_numpy():
    rng = np.random.default_rng(0)
    data = rng.gamma(4.0, 2.5, size=997)
    s = B.summarize(data.tolist(), batch=1)
    assert s.count == 997
    assert s.median_ms == pytest.approx(np.median(data))
    for q, got in ((90, s.p90_ms), (95, s.p95_ms), (99, s.p99_ms)):
        assert got == pytest.approx(np.percentile(data, q))
    assert s.mean_ms == pytest.approx(data.mean())
    assert s.min_ms == data.min() and s.max_ms == data.max()
    assert s.std_ms == pytest.approx(data.std())
    assert s.fps == pytest.approx(1000.0 / np.median(data))


def test_summarize_known_values_and_batch():
    s = B.summarize([10.0, 20.0, 30.0, 40.0], batch=4)
    assert s.median_ms == 25.0
    assert s.p90_ms == pytest.approx(37.0)  # linear: 30 + 0.7 * 10
    assert s.fps == pytest.approx(4 * 1000 / 25.0)
    # throughput over the loop's wall time: 4 queries x 4 images in 0.1 s
    assert s.throughput == pytest.approx(160.0)
    s2 = B.summarize([10.0, 20.0, 30.0, 40.0], batch=4, walltime_s=0.2)
    assert s2.throughput == pytest.approx(80.0)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [-1.0]])
def test_summarize_rejects_bad_samples(bad):
    with pytest.raises(ValueError):
        B.summarize(bad)


def test_interleaving_counts_warmup_and_errors():
    calls = []

    def make(name):
        return lambda: calls.append(name)

    def boom():
        raise RuntimeError("library exploded\nsecond line")

    a, b, c = B.Series("a", make("a")), B.Series("b", make("b")), B.Series("c", boom)
    B.run_interleaved([a, b, c], warmup=2, iters=7, block=3, settle=1)
    assert len(a.warmup_ms) == 2 and len(a.samples_ms) == 7
    assert len(b.warmup_ms) == 2 and len(b.samples_ms) == 7
    assert c.error == "RuntimeError: library exploded" and not c.samples_ms
    # interleaved: b's queries start before a's are all done
    first_b = calls.index("b", 2 * 2)  # after both warm-ups
    assert "a" in calls[first_b:]
    # one untimed settle query per block: 7 timed in blocks of 3 -> 3 blocks -> 3 settles
    assert calls.count("a") == 2 + 7 + 3


def test_interleaving_by_seconds_has_minimum():
    s = B.Series("fast", lambda: None)
    B.run_interleaved([s], warmup=0, iters=None, seconds=1e-6, min_iters=10, block=4)
    assert len(s.samples_ms) >= 10


# --------------------------------------------------------------------------- parsing


def test_parse_choices():
    assert B.parse_choices("all", B.BACKENDS, "backend") is None
    assert B.parse_choices(None, B.BACKENDS, "backend") is None
    assert B.parse_choices("ort, trt,ort", B.BACKENDS, "backend") == ["onnxruntime", "tensorrt"]
    with pytest.raises(ConfigError, match="unknown backend 'tflite'"):
        B.parse_choices("tflite", B.BACKENDS, "backend")
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        B.parse_choices("fp32,int4", B.PRECISIONS, "precision")


@pytest.mark.parametrize("text", ["640", "640x", "axb", "0x360", "640x0", "10000x10000", "-1x5"])
def test_parse_resolutions_rejects(text):
    with pytest.raises(ConfigError):
        B.parse_resolutions([text])


def test_parse_resolutions_dedups():
    assert B.parse_resolutions(["640x360", "640X360", "512x512"]) == [(640, 360), (512, 512)]
    assert B.parse_resolutions(None) == [(640, 360)]


TRTEXEC_10 = """\
[11/25/2026-08:00:00] [I] === Performance summary ===
[11/25/2026-08:00:00] [I] Throughput: 812.345 qps
[11/25/2026-08:00:00] [I] Latency: min = 1.30 ms, max = 2.10 ms, mean = 1.41 ms, median = 1.40 ms, percentile(90%) = 1.50 ms, percentile(95%) = 1.60 ms, percentile(99%) = 1.90 ms
[11/25/2026-08:00:00] [I] Enqueue Time: min = 0.05 ms, max = 0.20 ms, mean = 0.06 ms, median = 0.06 ms, percentile(90%) = 0.07 ms, percentile(95%) = 0.08 ms, percentile(99%) = 0.10 ms
[11/25/2026-08:00:00] [I] H2D Latency: min = 0.10 ms, max = 0.20 ms, mean = 0.11 ms, median = 0.11 ms, percentile(90%) = 0.12 ms, percentile(95%) = 0.12 ms, percentile(99%) = 0.15 ms
[11/25/2026-08:00:00] [I] GPU Compute Time: min = 1.10 ms, max = 1.80 ms, mean = 1.20 ms, median = 1.19 ms, percentile(90%) = 1.25 ms, percentile(95%) = 1.30 ms, percentile(99%) = 1.60 ms
[11/25/2026-08:00:00] [I] D2H Latency: min = 0.08 ms, max = 0.12 ms, mean = 0.09 ms, median = 0.09 ms, percentile(90%) = 0.10 ms, percentile(95%) = 0.10 ms, percentile(99%) = 0.11 ms
[11/25/2026-08:00:00] [I] Total Host Walltime: 3.00 s
[11/25/2026-08:00:00] [I] Total GPU Compute Time: 2.95 s
"""  # noqa: E501

TRTEXEC_7 = (
    "[I] GPU Compute Time: min = 1.1 ms, max = 1.8 ms, mean = 1.2 ms, median = 1.19 ms, "
    "percentile: 1.6 ms at 99%\n"
)


def test_parse_trtexec_output():
    p = B.parse_trtexec_output(TRTEXEC_10)
    assert p["throughput_qps"] == pytest.approx(812.345)
    assert p["gpu_compute_time"]["median"] == pytest.approx(1.19)
    assert p["gpu_compute_time"]["p99"] == pytest.approx(1.60)
    assert p["latency"]["median"] == pytest.approx(1.40)  # not confused with H2D Latency
    assert p["h2d_latency"]["median"] == pytest.approx(0.11)
    assert p["d2h_latency"]["p90"] == pytest.approx(0.10)
    assert p["total_host_walltime_s"] == pytest.approx(3.0)
    assert p["total_gpu_compute_time_s"] == pytest.approx(2.95)
    old = B.parse_trtexec_output(TRTEXEC_7)
    assert old["gpu_compute_time"] == {
        "min": 1.1,
        "max": 1.8,
        "mean": 1.2,
        "median": 1.19,
        "p99": 1.6,
    }
    assert B.parse_trtexec_output("no summary here") == {}


# --------------------------------------------------------------------------- ratios / render


def _row(backend, precision, median, e2e=None, wh=(640, 360), kind="toolkit"):
    r = B.BenchResult(backend, precision, wh, 1, kind=kind)
    r.compute = B.summarize([median * 0.9, median, median * 1.1])
    if e2e is not None:
        r.end_to_end = B.summarize([e2e * 0.9, e2e, e2e * 1.1])
    return r


def test_compute_ratios_by_hand():
    rows = [
        _row("torch", "fp32", 300.0),
        _row("onnxruntime", "fp32", 100.0, e2e=110.0),
        _row("onnxruntime-bare", "fp32", 95.0, kind="baseline"),
        _row("onnxruntime", "int8", 50.0),
        _row("openvino", "fp32", 80.0),
        _row("openvino", "int8", 40.0),
        B.BenchResult("tensorrt", "fp32", (640, 360), 1, status="skipped", reason="no GPU"),
    ]
    q = {r.name: r for r in B.compute_ratios(rows)}
    assert q["ort_overhead"].value == pytest.approx(100 / 95) and q["ort_overhead"].meets
    assert q["e2e_over_compute"].value == pytest.approx(1.10) and q["e2e_over_compute"].meets
    assert q["ort_vs_torch"].value == pytest.approx(3.0) and q["ort_vs_torch"].meets
    assert q["int8_speedup_onnxruntime"].value == pytest.approx(2.0)
    assert q["int8_speedup_openvino"].meets is None  # no CPU target: reported only
    assert "trt_fp32_vs_paper" not in q
    slow = B.compute_ratios([_row("onnxruntime", "fp32", 100.0, e2e=130.0)])
    assert slow[0].name == "e2e_over_compute" and slow[0].meets is False


def _fake_report(rows):
    return B.BenchReport(
        created="2026-11-25T08:00:00Z",
        config={"resolutions": [[640, 360]], "batch": 1, "threads": None, "trained_weights": False},
        system=B.system_info(),
        results=rows,
        ratios=B.compute_ratios(rows),
        notes=["not run: tensorrt fp32: [no GPU here]"],
        paper=B._paper_block([(640, 360)]),
    )


def test_render_shows_paper_row_and_definitions():
    rows = [
        _row("onnxruntime", "fp32", 100.0, e2e=110.0),
        B.BenchResult(
            "tensorrt",
            "int8",
            (640, 360),
            1,
            status="skipped",
            reason="TensorRT is not installed: pip install 'x[tensorrt]'",
        ),
    ]
    con = Console(record=True, width=250)
    B.render_report(_fake_report(rows), con)
    out = con.export_text()
    assert "paper (1080 Ti, PyTorch)" in out and "62.5" in out
    assert "Compute latency" in out and "End-to-end latency" in out and "Warm-up" in out
    assert "x[tensorrt]" in out  # rich markup in reasons is escaped, not eaten
    assert "[no GPU here]" in out
    assert "Target ratios" in out


def test_a_skipped_row_is_one_line_under_the_table():
    """A long reason (ONNX Runtime INT8 on an AVX2 CPU) stays out of the median column."""
    reason = "ONNX Runtime's 8-bit kernels saturate on this CPU " * 8 + "\nuse OpenVINO"
    rows = [
        _row("onnxruntime", "fp32", 100.0, e2e=110.0),
        B.BenchResult("onnxruntime", "int8", (640, 360), 1, status="skipped", reason=reason),
    ]
    con = Console(record=True, width=160)
    B.render_report(_fake_report(rows), con)
    out = con.export_text()
    table = out.split("Definitions")[0]
    assert table.count("saturate") == 8  # the reason once, not wrapped through the columns
    lines = [line for line in table.splitlines() if "not run: onnxruntime int8:" in line]
    assert len(lines) == 1 and "use OpenVINO" in table
    assert not any("saturate" in line and "│" in line for line in table.splitlines())


def test_system_info_fields():
    s = B.system_info()
    for key in ("hostname", "cpu", "versions", "python"):
        assert key in s
    assert s["cpu"]["logical_cores"] >= 1
    assert s["cpu"]["governor"]
    assert s["versions"]["numpy"] == np.__version__


# --------------------------------------------------------------------------- a real run


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench_cache")


@contextlib.contextmanager
def _int8_dot(value: str):
    """The CPU probe forced for a session-scoped run (monkeypatch is per test)."""
    from cifrenet_edge.runtime.cpu_int8 import FORCE_ENV

    saved = os.environ.get(FORCE_ENV)
    os.environ[FORCE_ENV] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(FORCE_ENV, None)
        else:
            os.environ[FORCE_ENV] = saved


def _tiny_run(cache: Path):
    return B.run_bench(
        resolutions=[TINY],
        backends=["torch", "onnxruntime", "openvino", "tensorrt"],
        precisions=["fp32", "int8"],
        warmup=1,
        iters=3,
        cache=str(cache),
    )


@pytest.fixture(scope="session")
def tiny_report(bench_cache):
    """One real run: every CPU engine, FP32 and INT8, plus TensorRT asked for by name.

    The CPU probe says "int8 dot product" (VNNI) whatever CI runs on, so the rows are the
    same on every machine; ``test_tiny_run_without_int8_dot_product`` covers the other kind.
    """
    with _int8_dot("1"):
        return _tiny_run(bench_cache)


def test_tiny_run_structure(tiny_report):
    rep = tiny_report
    ok = {(r.backend, r.precision) for r in rep.rows("ok")}
    assert {
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
        ("openvino", "fp32"),
        ("openvino", "int8"),
        ("onnxruntime-bare", "fp32"),
    } <= ok
    for r in rep.rows("ok"):
        assert r.compute.count == 3 and r.compute.min_ms > 0
        assert r.warmup["compute"]["iters"] == 1
        assert tuple(r.resolution) == TINY
        if r.kind == "toolkit":
            assert r.end_to_end.count == 3 and r.model_sha256
        assert Path(r.model).is_file()
    skipped = {(r.backend, r.precision): r.reason for r in rep.rows("skipped")}
    assert "int8" in skipped[("torch", "int8")].lower()
    if B.availability("tensorrt", "fp32"):  # no GPU here: said why, and the rest carried on
        assert "TensorRT" in skipped[("tensorrt", "fp32")]
    names = {q.name for q in rep.ratios}
    assert {
        "ort_overhead",
        "ort_vs_torch",
        "int8_speedup_onnxruntime",
        "int8_speedup_openvino",
    } <= names
    assert any("quantized" in n for n in rep.notes)  # first run: exported into the cache
    # the INT8 model was calibrated on synthetic street scenes written into the cache
    from cifrenet_edge.manifest import read_manifest

    int8 = next(r for r in rep.rows("ok") if r.precision == "int8")
    assert "calib_synthetic" in json.dumps(read_manifest(int8.model)["calibration"])


def test_json_schema_roundtrip(tiny_report, tmp_path):
    path = B.write_report_json(tiny_report, tmp_path / "r.json")
    d = json.loads(path.read_text())
    B.check_report_dict(d)
    assert d["schema"] == B.SCHEMA and d["schema_version"] == B.SCHEMA_VERSION
    assert d["definitions"]["compute"].startswith("Compute latency")
    assert d["paper"]["fps"] == {"128x64": None}
    bad = copy.deepcopy(d)
    bad["schema_version"] = 99
    with pytest.raises(ConfigError, match="schema_version"):
        B.check_report_dict(bad)
    bad = copy.deepcopy(d)
    ok = next(r for r in bad["results"] if r["status"] == "ok")
    ok["compute"]["p99_ms"] = ok["compute"]["max_ms"] + 1
    with pytest.raises(ConfigError, match="not ordered"):
        B.check_report_dict(bad)
    bad = copy.deepcopy(d)
    del bad["results"][0]["compute"]
    with pytest.raises(ConfigError, match="lacks"):
        B.check_report_dict(bad)
    bad = copy.deepcopy(d)
    sk = next(r for r in bad["results"] if r["status"] == "skipped")
    sk["reason"] = ""
    with pytest.raises(ConfigError, match="without a reason"):
        B.check_report_dict(bad)


def test_int8_rows_carry_their_agreement_with_fp32(tiny_report):
    """No INT8 speed without its accuracy: measured on the bench's frames, shown in the table."""
    int8 = [r for r in tiny_report.rows("ok") if r.precision == "int8"]
    assert len(int8) == 2
    for r in int8:
        acc = r.accuracy
        # forced "dot product": on an AVX2-only CI machine these are the saturating kernels,
        # so only that it was measured is asserted here (the 7-bit run below checks more)
        assert acc["measured"] and acc["frames"] == 4 and 0.0 < acc["agreement"] <= 1.0
        assert acc["fp32_classes_seen"] >= 2  # probe weights: the class map means something
    assert all(r.accuracy is None for r in tiny_report.rows("ok") if r.precision != "int8")
    assert tiny_report.config["weights_kind"] == "probe"
    console = Console(record=True, width=220)
    B.render_report(tiny_report, console)
    text = console.export_text()
    assert "vs FP32" in text and f"{100 * int8[0].accuracy['agreement']:.1f}%" in text


def test_tiny_run_without_int8_dot_product(bench_cache):
    """An AVX2-only CPU: ONNX Runtime INT8 is refused (it would saturate), OpenVINO runs u8/w7."""
    with _int8_dot("0"):
        rep = _tiny_run(bench_cache)
    rows = {(r.backend, r.precision): r for r in rep.results}
    ort8 = rows[("onnxruntime", "int8")]
    assert ort8.status == "skipped" and "saturate" in ort8.reason
    ov8 = rows[("openvino", "int8")]
    assert ov8.status == "ok" and ov8.accuracy["weight_bits"] == 7
    assert ov8.accuracy["variant"] == "u8_inputs" and "u8 inputs" in ov8.accuracy["path"]
    assert ov8.accuracy["measured"] and ov8.accuracy["agreement"] <= 1.0
    assert check("bench.openvino_u8.agreement", ov8.accuracy["agreement"], ">", 0.5, 1.0)
    console = Console(record=True, width=220)
    B.render_report(rep, console)
    assert "% u8" in console.export_text()


def test_plot_is_png(tiny_report, tmp_path):
    p = B.plot_report(tiny_report, tmp_path / "chart.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_run_writes_json_and_plot(bench_cache, tiny_report, tmp_path):
    # the session run filled the cache, so this reuses the exported model
    out = tmp_path / "cli.json"
    r = CliRunner().invoke(
        app,
        [
            "bench",
            "--res",
            f"{TINY[0]}x{TINY[1]}",
            "--backend",
            "onnxruntime",
            "--precision",
            "fp32",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--cache",
            str(bench_cache),
            "--json",
            str(out),
        ],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    B.check_report_dict(d)
    assert out.with_suffix(".png").is_file()
    assert not any("exported" in n for n in d["notes"])  # cache hit
    assert "paper" in r.output and "Definitions" in r.output


# --------------------------------------------------------------------------- bad input (CLI)


def _cli_error(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    return exc.value.code, err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--res", "640x"], "malformed resolution"),
        (["--res", "0x360"], "too small"),
        (["--res", "9000x9000"], "too large"),
        (["--backend", "tflite"], "unknown backend"),
        (["--precision", "int4"], "unknown precision"),
        (["--model", "/nonexistent/model.onnx"], "does not exist"),
        (["--batch", "0", "--backend", "onnxruntime"], "--batch 0"),
        (["--iters", "0", "--backend", "onnxruntime"], "--iters 0"),
    ],
)
def test_cli_bad_input_one_line(argv, needle, capsys):
    code, err = _cli_error(["bench", *argv], capsys)
    assert code == 2
    assert err.startswith("error: ") and needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(
    B.availability("tensorrt", "fp32") is None, reason="TensorRT is available on this machine"
)
def test_cli_only_unavailable_backend_fails(capsys):
    code, err = _cli_error(["bench", "--res", "128x64", "--backend", "tensorrt"], capsys)
    assert code == 2 and "nothing to benchmark" in err and "TensorRT" in err
    assert len(err.splitlines()) == 1


@pytest.mark.gpu
def test_gpu_tensorrt_rows(tmp_path):
    """On a GPU: TensorRT rows carry GPU Compute Time, H2D and D2H from CUDA events."""
    rep = B.run_bench(
        resolutions=[(256, 128)],
        backends=["tensorrt"],
        precisions=["fp32"],
        warmup=2,
        iters=20,
        cache=str(tmp_path),
    )
    rows = [r for r in rep.rows("ok") if r.backend == "tensorrt"]
    assert rows and all(r.compute and r.h2d and r.d2h and r.latency for r in rows)
    assert all("CUDA events" in r.compute_timer for r in rows)
    if B._trt_major() >= 10:
        assert {r.cuda_graph for r in rep.results if r.backend == "tensorrt"} == {False, True}
    B.check_report_dict(B.report_to_dict(rep))


def test_model_file_sets_resolution_and_precision(tiny_report):
    fp32 = next(r for r in tiny_report.rows("ok") if r.backend == "onnxruntime-bare").model
    rep = B.run_bench(model=fp32, backends=["onnxruntime"], iters=2, warmup=0, end_to_end=False)
    assert rep.config["resolutions"] == [list(TINY)]
    assert {(r.backend, r.status) for r in rep.results} == {
        ("onnxruntime", "ok"),
        ("onnxruntime-bare", "ok"),
    }
    with pytest.raises(ConfigError, match="is fixed at 128x64"):
        B.run_bench(model=fp32, resolutions=[(640, 360)], backends=["onnxruntime"], iters=1)
    with pytest.raises(B.BackendUnavailableError, match="FP32 weights"):
        B.run_bench(model=fp32, backends=["onnxruntime"], precisions=["int8"], iters=1)
