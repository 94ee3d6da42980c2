"""`cifrenet-edge info` through the real entry point, as a user runs it."""

import json
import subprocess
import sys

import pytest


def run_cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "cifrenet_edge", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_info_json_matches_paper_figures():
    proc = run_cli("info", "--res", "640x360", "--res", "1024x512", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["parameters"]["total"] == 1_949_901
    rows = {(r["width"], r["height"]): r for r in report["resolutions"]}
    assert round(rows[(640, 360)]["macs"] / 1e9, 2) == 7.12
    assert round(rows[(640, 360)]["flops_paper"] / 1e9, 2) == 7.31
    assert rows[(640, 360)]["paper_gflops"] == 7.3
    assert rows[(1024, 512)]["paper_fps_1080ti"] == 34.5


def test_info_table_shows_paper_beside_measured():
    proc = run_cli("info", "--preset", "camvid", "--res", "640x360")
    assert proc.returncode == 0, proc.stderr
    assert "7.11 G" in proc.stdout and "62.5" in proc.stdout and "camvid" in proc.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["info", "--res", "640x"], "malformed resolution"),
        (["info", "--res", "0x360"], "too small"),
        (["info", "--res", "100000x360"], "too large"),
        (["info", "--preset", "ade20k"], "unknown preset"),
    ],
)
def test_bad_input_is_one_line_error(args, needle):
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert "Traceback" not in proc.stderr
