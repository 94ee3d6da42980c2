"""Calibration sources: real frames only, the runtime's preprocessing, one-line errors."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cifrenet_edge._io import sha256_file
from cifrenet_edge.data.calibration import (
    MIN_RECOMMENDED_COUNT,
    describe,
    evenly_spaced,
    load_calibration,
    sample_video,
)
from cifrenet_edge.data.synthetic import make_scene
from cifrenet_edge.errors import CalibrationError, ConfigError
from cifrenet_edge.preprocess import preprocess
from cifrenet_edge.presets import BGR_MEAN, INPUT_SCALE

WH = (160, 96)


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture(scope="session")
def scene_video(tmp_path_factory) -> Path:
    """An MJPG .avi of 12 synthetic scenes at 320x180 (frame i = scene i)."""
    path = tmp_path_factory.mktemp("video") / "drive.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 180))
    for s in range(12):
        vw.write(make_scene(s, (320, 180))[0])
    vw.release()
    return path


def test_folder_uses_runtime_preprocess_exactly(real_images_dir):
    data = load_calibration(real_images_dir, WH)
    files = sorted(real_images_dir.glob("*.jpg"))
    assert len(data) == len(files) == 5
    for batch, f in zip(data.batches, files):
        assert batch.shape == (1, 3, WH[1], WH[0]) and batch.dtype == np.float32
        # bit-identical to what the runtime computes on the same (differently sized) image
        np.testing.assert_array_equal(
            batch, preprocess(cv2.imread(str(f)), WH, BGR_MEAN, INPUT_SCALE)
        )
    fp = data.fingerprint
    assert fp["kind"] == "folder" and fp["count"] == 5
    assert [r["name"] for r in fp["files"]] == [f.name for f in files]
    assert fp["files"][0]["sha256"] == sha256_file(files[0])
    assert fp["preprocessing"] == {
        "function": "cifrenet_edge.preprocess.preprocess",
        "wh": list(WH),
        "interpolation": "INTER_LINEAR",
        "mean_bgr": list(BGR_MEAN),
        "scale": INPUT_SCALE,
        "channel_order": "BGR",
    }
    assert len(fp["source_sizes"]) > 1  # several input sizes, all resized like the runtime
    assert any(str(MIN_RECOMMENDED_COUNT) in w for w in data.warnings)
    json.dumps(fp)  # goes into the manifest as is


def test_fingerprint_changes_with_content_and_settings(real_images_dir, tmp_path):
    a = load_calibration(real_images_dir, WH).fingerprint["sha256"]
    assert load_calibration(real_images_dir, WH).fingerprint["sha256"] == a
    assert load_calibration(real_images_dir, (128, 96)).fingerprint["sha256"] != a
    for f in real_images_dir.glob("*.jpg"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    img = cv2.imread(str(tmp_path / "coffee.jpg"))
    cv2.imwrite(str(tmp_path / "coffee.jpg"), 255 - img)
    assert load_calibration(tmp_path, WH).fingerprint["sha256"] != a


def test_count_takes_evenly_spaced_frames(real_images_dir):
    assert evenly_spaced(10, 3) == [0, 4, 9] or evenly_spaced(10, 3) == [0, 5, 9]
    assert evenly_spaced(4, 10) == [0, 1, 2, 3]
    data = load_calibration(real_images_dir, WH, count=3)
    assert [r["name"] for r in data.fingerprint["files"]] == [
        "astronaut.jpg",
        "coffee.jpg",
        "rocket.jpg",
    ]
    with pytest.raises(ConfigError):
        load_calibration(real_images_dir, WH, count=0)


def test_video_sampled_evenly(scene_video):
    data = load_calibration(scene_video, WH, count=4)
    fp = data.fingerprint
    assert fp["kind"] == "video" and fp["count"] == 4
    assert [f["index"] for f in fp["frames"]] == [0, 4, 7, 11]
    assert fp["video_sha256"] == sha256_file(scene_video)
    assert fp["source_sizes"] == [[320, 180]]
    assert data.batches[0].shape == (1, 3, WH[1], WH[0])


def test_list_file(real_images_dir, tmp_path):
    lst = tmp_path / "calib.txt"
    rel = Path("..") / "x"  # relative paths are relative to the list file
    lst.write_text(
        "# frames\n\n" + "\n".join(str(p) for p in sorted(real_images_dir.glob("*.jpg"))[:2])
    )
    data = load_calibration(lst, WH)
    assert data.fingerprint["kind"] == "list" and len(data) == 2
    lst.write_text(str(rel) + "\n")
    with pytest.raises(CalibrationError) as e:
        load_calibration(lst, WH)
    assert "does not exist" in one_line(e)


def test_non_images_skipped_with_count_corrupt_image_stops(real_images_dir, tmp_path):
    for f in real_images_dir.glob("*.jpg"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "notes.txt").write_text("camera 3, afternoon")
    (tmp_path / "labels.json").write_text("{}")
    data = load_calibration(tmp_path, WH)
    assert len(data) == 5 and data.fingerprint["skipped"]["non_image"] == 2
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CalibrationError) as e:
        load_calibration(tmp_path, WH)
    assert "broken.png" in one_line(e)


def test_refuses_constant_and_random_frames(tmp_path):
    rng = np.random.default_rng(0)
    const, noise = tmp_path / "const", tmp_path / "noise"
    const.mkdir()
    noise.mkdir()
    for i in range(3):
        cv2.imwrite(str(const / f"{i}.png"), np.full((96, 160, 3), 40 * i, np.uint8))
        cv2.imwrite(str(noise / f"{i}.png"), rng.integers(0, 256, (96, 160, 3), dtype=np.uint8))
    for folder in (const, noise):
        with pytest.raises(CalibrationError) as e:
            load_calibration(folder, WH)
        assert "no usable frame" in one_line(e)
    # one black frame among real ones is skipped and counted, not fatal
    cv2.imwrite(str(const / "scene.png"), make_scene(1, (160, 96))[0])
    data = load_calibration(const, WH)
    assert len(data) == 1 and data.fingerprint["skipped"]["unusable"] == 3


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, err, words",
    [
        (lambda p: p / "missing", CalibrationError, "does not exist"),
        (lambda p: p, CalibrationError, "holds no images"),
        (lambda p: _file(p / "a.mp4", b"\x00" * 2048), CalibrationError, "video"),
        (lambda p: _file(p / "one.jpg", b"x"), ConfigError, "single image"),
        (lambda p: _file(p / "m.onnx", b"x"), ConfigError, "not a folder"),
    ],
    ids=["missing", "empty-folder", "undecodable-video", "single-image", "unknown-kind"],
)
def test_bad_sources_one_line(tmp_path, make, err, words):
    src = make(tmp_path)
    with pytest.raises(err) as e:
        load_calibration(src, WH)
    assert words in one_line(e)


def test_no_source_no_int8():
    for empty in (None, ""):
        with pytest.raises(CalibrationError) as e:
            load_calibration(empty, WH)
        assert "no random fallback" in one_line(e)


def test_unreadable_folder(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()

    def deny(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "iterdir", deny)
    with pytest.raises(CalibrationError) as e:
        load_calibration(folder, WH)
    assert "Permission denied" in one_line(e)


def test_sample_video_and_cli(scene_video, tmp_path, capsys):
    out = tmp_path / "frames"
    written = sample_video(scene_video, out, count=3)
    assert [p.name for p in written] == ["drive_000000.png", "drive_000006.png", "drive_000011.png"]
    assert describe(out, WH)["usable_frames"] == 3

    import cifrenet_edge.cli.calib  # noqa: F401  (registers `calib` until the loader lists it)
    from cifrenet_edge.cli import main

    with pytest.raises(SystemExit) as e:
        main(["calib", "sample", str(scene_video), "--out", str(tmp_path / "cli"), "--count", "2"])
    assert e.value.code in (0, None)
    assert len(list((tmp_path / "cli").glob("*.png"))) == 2
    assert "wrote 2 frames" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["calib", "check", str(tmp_path / "cli"), "--res", "160x96", "--json"])
    assert e.value.code in (0, None)
    report = json.loads(capsys.readouterr().out)
    assert report["usable_frames"] == 2 and report["enough"] is False
    with pytest.raises(SystemExit) as e:
        main(["calib", "check", str(tmp_path / "nothing-here")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: calibration source") and "Traceback" not in "".join(err)
