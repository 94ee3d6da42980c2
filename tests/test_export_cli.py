"""`cifrenet-edge export` on the command line: a working export and one-line errors."""

from pathlib import Path

import pytest

from cifrenet_edge.cli import main


def run_cli(capsys, *args):
    """Run the real entry point in-process; returns (exit code, stdout, stderr)."""
    try:
        main(["export", *map(str, args)])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_export_writes_model_manifest_and_warns_untrained(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    code, stdout, stderr = run_cli(capsys, "--res", "96x64", "--output", out)
    assert code == 0, stderr
    assert out.is_file() and Path(str(out) + ".json").is_file()
    assert "UNTRAINED" in stderr
    assert "argmax agreement 100" in stdout or "argmax agreement 99.99" in stdout
    assert "manifest" in stdout and "UNTRAINED" in stdout


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    import torch

    from cifrenet_edge.model.weights import build_model, save_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    city, _ = build_model("cityscapes")
    camvid, _ = build_model("camvid")
    raw = folder / "raw_city.pth"  # a bare state dict: no preset recorded, shapes must tell
    torch.save(city.state_dict(), raw)
    junk = folder / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    return {
        "cityscapes": save_checkpoint(city, folder / "city.pth"),
        "camvid": save_checkpoint(camvid, folder / "camvid.pth"),
        "raw_city": raw,
        "junk": junk,
    }


BAD = [
    # (arguments, words the one error line must hold)
    (["--weights", "{tmp}/missing.pth"], ["does not exist", "--weights"]),
    (["--weights", "{junk}"], ["cannot read weights", "state_dict"]),
    (["--weights", "{cityscapes}", "--preset", "camvid"], ["trained for preset", "cityscapes"]),
    (["--weights", "{raw_city}", "--preset", "camvid"], ["do not fit preset", "--preset"]),
    # camvid and helen share every tensor shape: only the recorded preset can tell them apart
    (["--weights", "{camvid}", "--preset", "helen"], ["trained for preset 'camvid'", "--preset"]),
    (["--preset", "kitti"], ["unknown preset", "cityscapes"]),
    (["--res", "640by360"], ["WIDTHxHEIGHT", "640x360"]),
    (["--res", "16x16"], ["too small", "32"]),
    (["--output", "{junk}/sub/m.onnx"], ["output folder", "--output"]),
    (["--output", "{tmp}/m.txt"], ["must end in .onnx", "--output"]),
    (["--opset", "17", "--target", "trt8.2"], ["above what TensorRT 8.2", "--opset 13"]),
    (["--target", "trt9"], ["unknown target", "trt8.6"]),
    (["--precision", "int8"], ["INT8 needs real calibration images", "--calib"]),
    (["--precision", "int4"], ["unknown --precision", "int8"]),
    (["--dynamic", "--min-res", "800x600"], ["does not contain --res", "--min-res"]),
    (["--min-res", "64x64"], ["dynamic model", "--dynamic"]),
    (["--verify-images", "{tmp}/nothing"], ["not a folder", "--verify-images"]),
    (["--int8-mode", "calibrator", "--precision", "int8", "--calib", "{tmp}"], ["--format engine"]),
]


@pytest.mark.parametrize("args,words", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_error_line_and_leaves_no_file(tmp_path, capsys, checkpoints, args, words):
    work = tmp_path / "work"
    work.mkdir()
    subs = {"tmp": work, **{k: v for k, v in checkpoints.items()}}
    argv = [a.format(**subs) for a in args]
    if "--output" not in argv:
        argv += ["--output", str(work / "out.onnx")]
    code, stdout, stderr = run_cli(capsys, *argv)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, (stdout, stderr)
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert list(work.iterdir()) == [], "a file was left behind"
