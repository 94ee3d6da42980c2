"""Bad inputs through the real CLI: one `error:` line naming the fix, exit code 2, no traceback.

Each case here failed a user-level sweep (a traceback, or a message whose fix could not work);
running the installed entry point in a subprocess is the only way to see what a user sees,
because only ``cifrenet_edge.cli.main`` turns a ``CifreNetError`` into the one-line message.
"""

import subprocess
import sys
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from cifrenet_edge._io import atomic_path
from cifrenet_edge.errors import ConfigError


def run_cli(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cifrenet_edge", *args],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 2, exactly one `error:` line holding every needle, and no traceback."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert proc.returncode == 2, (proc.returncode, out)
    return lines[0]


def no_partials(folder: Path) -> None:
    assert not list(folder.rglob("*.partial")), list(folder.rglob("*"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad_inputs")
    (d / "a_file.png").write_bytes(b"not a folder")
    (d / "junk.pth").write_bytes(b"junk\n")
    (d / "junk.bag").write_bytes(b"junk\n")
    (d / "folder").mkdir()
    writer = cv2.VideoWriter(str(d / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 96))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(4):
        writer.write(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8))
    writer.release()
    return d


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_atomic_path_unwritable_folder_is_one_line_error():
    # os.access says yes for root (and read-only mounts); mkstemp is what really fails there.
    with pytest.raises(ConfigError, match="choose another --output"), atomic_path("/proc/x.onnx"):
        pass


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_export_unwritable_output(scratch):
    proc = run_cli(["export", "--res", "160x96", "-q", "-o", "/proc/x.onnx"], scratch)
    assert_one_line_error(proc, "/proc", "choose another --output")


def test_export_weights_folder(scratch):
    proc = run_cli(["export", "--weights", "folder", "--res", "160x96", "-o", "o.onnx"], scratch)
    assert_one_line_error(proc, "is a folder")
    assert not (scratch / "o.onnx").exists()


def test_export_weights_junk_names_the_format(scratch):
    proc = run_cli(["export", "--weights", "junk.pth", "--res", "160x96", "-o", "o.onnx"], scratch)
    line = assert_one_line_error(proc, "junk.pth", "not a torch.save file")
    assert not (scratch / "o.onnx").exists(), line


def test_bench_model_folder(scratch):
    proc = run_cli(["bench", "--model", "folder", "--no-save"], scratch)
    assert_one_line_error(proc, "is a folder")


def test_calib_sample_folder_instead_of_video(scratch):
    proc = run_cli(["calib", "sample", "folder", "--out", "cs", "--count", "2"], scratch)
    assert_one_line_error(proc, "is a folder", "--calib")


def test_calib_sample_out_is_a_file(scratch):
    proc = run_cli(["calib", "sample", "v.avi", "--out", "a_file.png", "--count", "2"], scratch)
    assert_one_line_error(proc, "a_file.png", "--out")
    assert (scratch / "a_file.png").read_bytes() == b"not a folder"
    no_partials(scratch)


def test_train_output_is_a_file(scratch):
    args = ["train", "--data", "synthetic:4@160x96", "--iters", "1", "--batch-size", "2"]
    args += ["--crop", "160x96", "--device", "cpu", "-o", "a_file.png", "-q"]
    proc = run_cli(args, scratch)
    assert_one_line_error(proc, "a_file.png", "--output")
    assert (scratch / "a_file.png").read_bytes() == b"not a folder"


@pytest.fixture(scope="module")
def bag_without_images(tmp_path_factory) -> Path:
    """A ROS 2 bag whose only topic is a std_msgs/String."""
    pytest.importorskip("rosbags")
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)
    string = ts.types["std_msgs/msg/String"]
    path = tmp_path_factory.mktemp("bag") / "chatter_bag"
    with Writer(path, version=8) as writer:
        conn = writer.add_connection("/chatter", string.__msgtype__, typestore=ts)
        writer.write(conn, 1, ts.serialize_cdr(string(data="hi"), string.__msgtype__))
    return path


def test_predict_bag_without_image_topic(scratch, small_fp32_onnx, bag_without_images):
    # "pick one with --topic" cannot help when the bag holds no image topic at all.
    for extra in ([], ["--topic", "/chatter"]):
        args = ["predict", str(small_fp32_onnx), "-s", str(bag_without_images), "-o", "pb"]
        proc = run_cli(args + extra, scratch)
        line = assert_one_line_error(proc, "no image topic", "/chatter", "sensor_msgs/Image")
        assert "pick one with --topic" not in line


def test_predict_junk_bag(scratch, small_fp32_onnx):
    proc = run_cli(["predict", str(small_fp32_onnx), "-s", "junk.bag", "-o", "pj"], scratch)
    assert_one_line_error(proc, "junk.bag", "ROS 1 .bag")


def test_failed_int8_export_leaves_no_new_fp32_file(scratch):
    """A failed pipeline leaves nothing new: not even the FP32 file written on the way."""
    out = scratch / "int8run"
    (out / "calib").mkdir(parents=True)
    args = ["export", "--res", "160x96", "-q", "--precision", "int8", "--calib", "int8run/calib"]
    proc = run_cli([*args, "-o", "int8run/m_int8.onnx"], scratch)
    assert_one_line_error(proc, "int8run/calib")
    assert sorted(p.name for p in out.iterdir()) == ["calib"]


def test_predict_that_cannot_start_leaves_no_output_folder(scratch, small_fp32_onnx):
    proc = run_cli(
        ["predict", str(small_fp32_onnx), "--source", "missing.png", "-o", "pred_out"], scratch
    )
    assert_one_line_error(proc, "missing.png")
    assert not (scratch / "pred_out").exists()


def test_train_resume_missing_names_resume(scratch):
    args = ["train", "--data", "synthetic:4@160x96", "--iters", "1", "--batch-size", "2"]
    args += ["--crop", "160x96", "--resume", "nope.pth", "-o", "tr_run", "-q"]
    assert_one_line_error(run_cli(args, scratch), "--resume nope.pth", "last.pth")
