"""Roofline estimate: arithmetic checkable by hand, the device table, the CLI's estimate mode."""

import json

import pytest
from typer.testing import CliRunner

from cifrenet_edge.bench.estimate import (
    DEVICES_FILE,
    LABEL,
    DeviceSpec,
    cpu_peaks,
    device_names,
    estimate,
    estimate_costs,
    load_devices,
    resolve_devices,
    roofline,
)
from cifrenet_edge.cli import app
from cifrenet_edge.errors import ConfigError
from cifrenet_edge.model.complexity import LayerCost

# Two layers whose bound is easy to work out on paper (see test_roofline_by_hand).
COSTS = [
    LayerCost(
        "conv", "Conv2d", macs=10**9, extra_flops=0, in_elems=10**6, out_elems=10**6, params=0
    ),
    LayerCost("bn", "BatchNorm2d", 0, 2 * 10**6, 10**6, 10**6, 64),  # fused: no traffic
    LayerCost("up", "Resize", 0, 0, in_elems=10**6, out_elems=4 * 10**6, params=0),
]
DEV = DeviceSpec(
    key="toy",
    name="toy device",
    peak_tops={"fp32": 1.0, "fp16": None, "int8": 4.0},
    bandwidth_gbs=100.0,
)


def test_roofline_by_hand():
    # fp32: conv compute 2*1e9/1e12 = 2 ms > memory (2e6*4 B)/1e11 = 0.08 ms -> 2 ms;
    # resize memory (5e6*4 B)/1e11 = 0.2 ms; BN is fused. Bound 2.2 ms.
    b = roofline(COSTS, DEV, "fp32")
    assert b.available and b.math == "fp32"
    assert b.bound_ms == pytest.approx(2.2)
    assert b.compute_ms == pytest.approx(2.0)
    assert b.memory_ms == pytest.approx(0.08 + 0.2)
    assert b.memory_bound_share == pytest.approx(0.2 / 2.2)
    assert b.fps_ceiling == pytest.approx(1000 / 2.2)
    # int8: conv 2e9/4e12 = 0.5 ms vs 2e6 B/1e11 = 0.02 ms; resize 5e6 B/1e11 = 0.05 ms.
    b8 = roofline(COSTS, DEV, "int8")
    assert b8.math == "int8" and b8.bound_ms == pytest.approx(0.55)


def test_missing_precision_falls_back_or_says_why():
    # fp16 has no peak here: an FP16 engine may still run FP32 kernels, so no fp16 bound
    # is printed as if fp16 math existed...
    b16 = roofline(COSTS, DEV, "fp16")
    assert not b16.available and "FP16" in b16.reason
    # ...and where fp16 exists but is slow (1080 Ti), the faster FP32 math is used.
    slow16 = DeviceSpec("p", "pascal", {"fp32": 1.0, "fp16": 0.01, "int8": None}, 100.0)
    b = roofline(COSTS, slow16, "fp16")
    assert b.math == "fp32"
    # conv: 2 ms compute; resize at 2 bytes: 1e7 B / 1e11 = 0.1 ms
    assert b.bound_ms == pytest.approx(2.1)
    assert not roofline(COSTS, slow16, "int8").available


def test_estimate_costs_totals():
    e = estimate_costs(COSTS, DEV, (640, 360))
    assert e.macs == 10**9
    assert e.bytes_fp32 == (2 * 10**6 + 5 * 10**6) * 4
    assert [b.precision for b in e.bounds] == ["fp32", "fp16", "int8"]
    assert e.label == LABEL and "ESTIMATE" in e.label


def test_cpu_peaks_from_flags():
    info = "model name : Test CPU\nflags : fpu sse2 avx avx2 fma avx512f avx512_vnni\n"
    p = cpu_peaks(info, cores=4, ghz=2.0)
    # 4 cores x 2 GHz x 16 lanes x 2 (FMA) x 2 units = 512 GFLOPS; VNNI = 4x for int8
    assert p["peak_tops"]["fp32"] == pytest.approx(0.512)
    assert p["peak_tops"]["int8"] == pytest.approx(2.048)
    assert p["peak_tops"]["fp16"] == pytest.approx(0.512)
    avx2 = cpu_peaks("flags : sse2 avx avx2 fma\n", cores=1, ghz=3.0)
    assert avx2["peak_tops"]["fp32"] == pytest.approx(3.0 * 8 * 2 * 2 / 1000)


def test_device_table_has_sources():
    data = json.loads(DEVICES_FILE.read_text())
    devices = load_devices()
    assert set(devices) == {"gtx1080ti", "jetson-nano", "xavier-nx", "orin-nano", "agx-orin"}
    assert set(data["devices"]) == set(devices)
    for d in devices.values():
        assert d.sources and d.peak_tops["fp32"] > 0 and d.bandwidth_gbs > 0
    # FACTS.md's figures, verbatim
    assert devices["gtx1080ti"].peak_tops["fp32"] == 11.3
    assert devices["gtx1080ti"].bandwidth_gbs == 484.0
    assert devices["jetson-nano"].peak_tops["int8"] is None
    assert devices["agx-orin"].bandwidth_gbs == 204.8


def test_resolve_devices():
    assert [d.key for d in resolve_devices("gtx1080ti,jetson-nano")] == ["gtx1080ti", "jetson-nano"]
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_devices("rtx9090")
    assert "cpu" in device_names()


def test_real_model_estimate_matches_facts():
    (e,) = estimate("gtx1080ti", (640, 360))
    assert e.macs == pytest.approx(7.12e9, rel=0.01)
    # FACTS.md: about 680 MB moved per frame at FP32 with fused conv layers
    assert 600e6 < e.bytes_fp32 < 800e6
    fp32, _fp16, int8 = e.bounds
    assert fp32.bound_ms > int8.bound_ms > 0
    # the paper's 62.5 FPS (16 ms) must sit above the physical floor, not below it
    assert fp32.bound_ms < 1000 / 62.5


def test_cli_estimate_only_all():
    r = CliRunner().invoke(
        app,
        ["bench", "--res", "640x360", "--estimate", "all", "--estimate-only"],
        env={"COLUMNS": "220"},
    )
    assert r.exit_code == 0, r.output
    assert "ESTIMATE" in r.output
    for name in ("GTX 1080 Ti", "Jetson Nano", "Xavier NX", "Orin Nano", "AGX Orin", "local CPU"):
        assert name in r.output


def test_cli_estimate_unknown_device():
    from cifrenet_edge.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--estimate", "nope", "--estimate-only"])
    assert exc.value.code == 2
