"""The README's device install, for real: a Python 3.8 venv (JetPack 5's interpreter).

It installs with the exact command the README's Jetson section starts with (ONNX Runtime
backend), then runs ``Segmenter`` on an ONNX the toolkit exported in this session and the
engine builder's ``--help``, from outside the checkout so only the installed copy can be
imported. pip's cache makes a rerun quick; the venv lives under tmp_path.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT_ONLY = ("torch", "onnx", "typer", "openvino", "matplotlib", "rosbags", "rich")


def _python38():
    """JetPack 5's interpreter on these machines (pyenv), or None."""
    candidates = [Path.home() / ".pyenv" / "versions" / "3.8.18" / "bin" / "python3"]
    found = shutil.which("python3.8")
    if found:
        candidates.append(Path(found))
    for exe in candidates:
        if exe.is_file():
            return exe
    try:  # pyenv's shim: PYENV_VERSION=3.8.18 python3
        proc = subprocess.run(
            ["python3", "-c", "import sys; print(sys.version_info[:2] == (3, 8), sys.executable)"],
            env={**os.environ, "PYENV_VERSION": "3.8.18"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    ok, _, exe = proc.stdout.strip().partition(" ")
    return Path(exe) if proc.returncode == 0 and ok == "True" else None


def readme_device_command() -> str:
    """The first command of the README's Jetson section (the one users copy)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Installing on the Jetson", 1)[1]
    block = re.search(r"```bash\n(.*?)\n```", section, re.S)
    assert block, "the Jetson section starts with a bash block"
    return block.group(1).strip().splitlines()[0]


def _run(cmd, cwd, env, timeout=300):
    proc = subprocess.run(
        cmd, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory):
    py = _python38()
    if py is None:
        pytest.skip("no Python 3.8 here (JetPack 5's interpreter; pyenv install 3.8.18)")
    venv = tmp_path_factory.mktemp("py38") / "venv"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYENV_VERSION", "VIRTUAL_ENV")
    }
    proc = _run([str(py), "-m", "venv", str(venv)], ROOT, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bin_dir = venv / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    command = readme_device_command()
    assert command.startswith("python3 -m pip install ")
    assert "[onnxruntime]" in command
    # `python3` is the venv's (first on PATH), as it would be on the device
    proc = _run(["bash", "-c", command + " -q"], ROOT, env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return bin_dir, env


def test_readme_device_install_is_runtime_only(device_venv):
    bin_dir, env = device_venv
    code = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps([sys.version_info[:2], sorted(d.metadata['Name'].lower() "
        "for d in m.distributions())]))"
    )
    proc = _run([str(bin_dir / "python3"), "-c", code], bin_dir, env)
    assert proc.returncode == 0, proc.stderr
    version, dists = json.loads(proc.stdout)
    assert version == [3, 8]
    assert "cifrenet-edge-runtime" in dists and "onnxruntime" in dists and "numpy" in dists
    assert "opencv-python-headless" in dists
    assert not [d for d in dists if d in TOOLKIT_ONLY], dists
    # what the subset leaves out cannot be imported, and says where it lives
    proc = _run(
        [str(bin_dir / "python3"), "-c", "from cifrenet_edge import CIFReNet"], bin_dir, env
    )
    assert proc.returncode != 0 and "pip install -e ." in proc.stderr.strip().splitlines()[-1]


def test_installed_segmenter_runs_a_toolkit_export(device_venv, runtime_content_onnx, tmp_path):
    """The device copy gives the toolkit's own class map for the same frame."""
    import cv2

    from cifrenet_edge import Segmenter

    bin_dir, env = device_venv
    frame_file = sorted((ROOT / "tests" / "data" / "real").glob("*.jpg"))[0]
    out = tmp_path / "mask.npy"
    script = (
        "import sys, cv2, numpy as np, cifrenet_edge\n"
        "from cifrenet_edge import Segmenter\n"
        "assert 'site-packages' in cifrenet_edge.__file__, cifrenet_edge.__file__\n"
        "seg = Segmenter.open(sys.argv[1])\n"
        "np.save(sys.argv[3], seg.predict(cv2.imread(sys.argv[2])))\n"
        "bad = [m for m in ('torch', 'onnx', 'typer') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(seg.backend.name, seg.reason)\n"
    )
    proc = _run(
        [
            str(bin_dir / "python3"),
            "-c",
            script,
            str(runtime_content_onnx),
            str(frame_file),
            str(out),
        ],
        tmp_path,
        env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("onnxruntime")
    device_mask = np.load(out)
    with Segmenter.open(runtime_content_onnx, device="cpu", backend="onnxruntime") as seg:
        here = seg.predict(cv2.imread(str(frame_file)))
    assert device_mask.shape == here.shape and len(np.unique(here)) > 1
    # Other ONNX Runtime and OpenCV releases there (1.19.2 on Python 3.8): border pixels of
    # the resizes may differ, the class map may not (measured: 99.8 % of pixels agree)
    assert float(np.mean(device_mask == here)) >= 0.99


def test_installed_builder_and_toolkit_commands(device_venv, tmp_path):
    bin_dir, env = device_venv
    for cmd in (
        [str(bin_dir / "cifrenet-edge-build"), "--help"],
        [str(bin_dir / "python3"), "-m", "cifrenet_edge.trt.build", "--help"],
    ):
        proc = _run(cmd, tmp_path, env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "--precision" in proc.stdout and "--dla-core" in proc.stdout
    for cmd in (
        [str(bin_dir / "cifrenet-edge"), "export", "--weights", "w.pth"],
        [str(bin_dir / "python3"), "-m", "cifrenet_edge", "train"],
    ):
        proc = _run(cmd, tmp_path, env)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "full toolkit" in proc.stderr
        assert "python3 -m pip install -e ." in proc.stderr
    proc = _run([str(bin_dir / "cifrenet-edge"), "info", "--env", "--json"], tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert isinstance(report["checks"], list) and report["python"].startswith("3.8")
    proc = _run([str(bin_dir / "cifrenet-edge"), "info", "--env"], tmp_path, env)
    assert proc.returncode == 0 and "Device check" in proc.stdout


def _project(path: Path) -> dict:
    """name/version/requires-python/dependencies of a pyproject (tomllib is 3.11+ only)."""
    text = path.read_text(encoding="utf-8").split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    out = {k: re.search(rf'^{k} = "([^"]*)"', text, re.M).group(1) for k in ("version",)}
    out["requires-python"] = re.search(r'^requires-python = "([^"]*)"', text, re.M).group(1)
    deps = re.search(r"^dependencies = \[(.*?)\]", text, re.M | re.S).group(1)
    out["dependencies"] = re.findall(r'"([^"]+)"', deps)
    return out


def test_device_distribution_keeps_the_toolkit_version():
    from cifrenet_edge import __version__

    main = _project(ROOT / "pyproject.toml")
    device = _project(ROOT / "device" / "pyproject.toml")
    assert device["version"] == main["version"] == __version__
    assert device["requires-python"] == ">=3.8"
    assert device["dependencies"] == ["numpy>=1.23", "opencv-python-headless>=4.8"]
    assert "torch>=2.1" in main["dependencies"]  # the full toolkit stays what `pip install .` is
