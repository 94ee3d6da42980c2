"""Triton model repositories from exported models: config.pbtxt parsed as Triton's ModelConfig."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cifrenet_edge.errors import ConfigError
from cifrenet_edge.serve.triton_repo import TritonOptions, write_model_repository

pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install '.[serve]')")


def pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


KIND = pb().ModelInstanceGroup  # KIND_AUTO, KIND_GPU, KIND_CPU


def parse(text):
    """The config as Triton reads it: protobuf text format of inference.ModelConfig."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def dynamic_onnx(tmp_path_factory):
    """A real --dynamic export: batch 1..4, 32x32 .. 128x64."""
    from cifrenet_edge.export import export_onnx

    out = tmp_path_factory.mktemp("dyn") / "dyn.onnx"
    return export_onnx("cityscapes", res=(64, 32), dynamic=True, output=out, quiet=True).path


@pytest.fixture()
def odd_names_onnx(runtime_content_onnx, tmp_path):
    """The static model with class names that need escaping in protobuf text and JSON."""
    path = tmp_path / "odd.onnx"
    shutil.copyfile(runtime_content_onnx, path)
    manifest = json.loads(Path(str(runtime_content_onnx) + ".json").read_text())
    manifest["classes"][0] = 'route "principale"'
    manifest["classes"][1] = "trottoir\\véhicule"
    Path(str(path) + ".json").write_text(json.dumps(manifest))
    return path, manifest


@pytest.fixture()
def plan_file(runtime_content_onnx, tmp_path):
    """A .plan with an engine manifest. The bytes are a placeholder, not an engine: the
    repository writer copies them unread (only Triton's TensorRT backend reads them)."""
    path = tmp_path / "m.plan"
    path.write_bytes(b"placeholder: the writer never parses engine bytes")
    manifest = json.loads(Path(str(runtime_content_onnx) + ".json").read_text())
    manifest.update(kind="engine", engine={"tensorrt": "10.3.0.26", "gpu": "NVIDIA L4"})
    Path(str(path) + ".json").write_text(json.dumps(manifest))
    return path


def test_static_onnx_repository(odd_names_onnx, tmp_path):
    model, manifest = odd_names_onnx
    repo = write_model_repository(model, tmp_path / "repo")
    assert repo.model_dir == tmp_path / "repo" / "cifrenet"
    assert sorted(p.name for p in repo.model_dir.iterdir()) == ["1", "config.pbtxt", "labels.txt"]
    assert (repo.model_dir / "1" / "model.onnx").read_bytes() == model.read_bytes()
    config = parse(repo.config_path.read_text())
    assert config.name == "cifrenet" and config.platform == "onnxruntime_onnx"
    assert config.default_model_filename == "model.onnx"
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    (inp,) = config.input
    (out,) = config.output
    assert inp.name == "input" and list(inp.dims) == [1, 3, 64, 128]
    assert out.name == "logits" and list(out.dims) == [1, 19, 64, 128]
    assert inp.data_type == out.data_type == pb().TYPE_FP32
    assert out.label_filename == "labels.txt"
    assert repo.labels_path.read_text(encoding="utf-8").splitlines() == manifest["classes"]
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, KIND.KIND_AUTO)]
    carried = json.loads(config.parameters["cifrenet_edge_manifest"].string_value)
    assert carried == manifest  # quotes, backslashes and accents survive both encodings
    assert any("fixed-batch" in n for n in repo.notes)
    assert any("nvcr.io/nvidia/tritonserver" in n for n in repo.notes)


def test_dynamic_onnx_repository_runs_with_the_runtime(dynamic_onnx, tmp_path):
    from cifrenet_edge.runtime import Segmenter

    opts = TritonOptions(name="seg_dyn", queue_delay_us=500, instances=2, kind="gpu")
    repo = write_model_repository(dynamic_onnx, tmp_path / "repo", opts)
    config = parse(repo.config_text)
    assert config.max_batch_size == 4
    assert list(config.input[0].dims) == [3, -1, -1]
    assert list(config.output[0].dims) == [19, -1, -1]
    assert list(config.dynamic_batching.preferred_batch_size) == [1, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, KIND.KIND_GPU)]
    frame = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    with Segmenter.open(dynamic_onnx) as a, Segmenter.open(repo.model_path) as b:
        assert np.array_equal(a.predict(frame), b.predict(frame))  # the sidecar travelled


def test_openvino_and_tensorrt_repositories(runtime_content_onnx, plan_file, tmp_path):
    ov = write_model_repository(
        runtime_content_onnx, tmp_path / "repo", TritonOptions(name="ov", backend="openvino")
    )
    config = parse(ov.config_text)
    assert config.backend == "openvino" and not config.platform
    assert config.default_model_filename == "model.onnx"
    assert config.instance_group[0].kind == KIND.KIND_CPU

    trt = write_model_repository(plan_file, tmp_path / "repo", TritonOptions(name="trt"))
    config = parse(trt.config_text)
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert trt.model_path.name == "model.plan" and trt.model_path.is_file()
    assert config.instance_group[0].kind == KIND.KIND_GPU
    assert config.parameters["cifrenet_edge_tensorrt"].string_value == "10.3.0.26"
    assert any("TensorRT 10.3.0.26" in n for n in trt.notes)
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["ov", "trt"]


def test_replacing_is_atomic(runtime_content_onnx, dynamic_onnx, tmp_path, monkeypatch):
    from cifrenet_edge.serve import triton_repo

    repo = tmp_path / "repo"
    first = write_model_repository(runtime_content_onnx, repo)
    before = first.config_path.read_text()

    def broken_copy(src, dst):
        Path(dst).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(triton_repo.shutil, "copyfile", broken_copy)
    with pytest.raises(OSError):
        write_model_repository(dynamic_onnx, repo)
    assert first.config_path.read_text() == before  # the old model is untouched
    assert sorted(p.name for p in repo.iterdir()) == ["cifrenet"]  # no partial folder left
    monkeypatch.undo()
    second = write_model_repository(dynamic_onnx, repo)
    assert parse(second.config_path.read_text()).max_batch_size == 4  # replaced, not merged
    assert sorted(p.name for p in repo.iterdir()) == ["cifrenet"]


@pytest.mark.parametrize(
    ("which", "opts", "words"),
    [
        ("static", {"max_batch": 8}, "fixed batch of 1"),
        ("dynamic", {"max_batch": 9}, "outside this model's batch range 1..4"),
        ("dynamic", {"preferred_batch": [2, 16]}, "outside 1..4"),
        ("static", {"backend": "tensorrt"}, "cannot run"),
        ("static", {"backend": "openvino", "kind": "gpu"}, "CPU only"),
        ("static", {"name": "a/b"}, "not valid"),
        ("static", {"backend": "tvm"}, "unknown Triton backend"),
    ],
)
def test_bad_options_are_one_line_errors(
    runtime_content_onnx, dynamic_onnx, tmp_path, which, opts, words
):
    model = runtime_content_onnx if which == "static" else dynamic_onnx
    with pytest.raises(ConfigError, match=words):
        write_model_repository(model, tmp_path / "repo", TritonOptions(**opts))
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_refuses_other_files_and_folders(
    runtime_content_checkpoint, runtime_content_onnx, tmp_path
):
    with pytest.raises(ConfigError, match="export one first"):
        write_model_repository(runtime_content_checkpoint, tmp_path / "repo")
    (tmp_path / "repo" / "cifrenet").mkdir(parents=True)
    (tmp_path / "repo" / "cifrenet" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a Triton model folder"):
        write_model_repository(runtime_content_onnx, tmp_path / "repo")
    assert (tmp_path / "repo" / "cifrenet" / "notes.txt").read_text() == "mine"


def run_export_cli(capsys, *args):
    from cifrenet_edge.cli import main

    try:
        main(["export", *map(str, args)])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def test_export_cli_writes_a_repository(runtime_content_onnx, tmp_path, capsys):
    repo = tmp_path / "repo"
    code, _, err = run_export_cli(
        capsys, "--format", "triton", "--from", runtime_content_onnx, "--output", repo
    )
    assert code == 0, err
    assert "nvcr.io/nvidia/tritonserver" in err
    assert parse((repo / "cifrenet" / "config.pbtxt").read_text()).platform == "onnxruntime_onnx"

    # the whole pipeline: a verified --dynamic export, only the repository left behind
    code, out, err = run_export_cli(
        capsys,
        *("--format", "triton", "--res", "64x32", "--dynamic", "--output", repo),
        *("--triton-name", "dyn", "--triton-max-batch", "2", "--quiet"),
    )
    assert code == 0, err
    config = parse((repo / "dyn" / "config.pbtxt").read_text())
    assert config.max_batch_size == 2 and list(config.dynamic_batching.preferred_batch_size) == [
        1,
        2,
    ]
    assert sorted(p.name for p in repo.iterdir()) == ["cifrenet", "dyn"]  # no stray files
    assert "argmax agreement" in out  # the export's own parity table is still printed


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--format", "onnx", "--from", "m.onnx"), "add --format triton"),
        (("--format", "triton", "--triton-max-batch", "4"), "dynamic batch dimension"),
        (("--format", "triton", "--triton-kind", "tpu"), "unknown instance kind"),
        (("--format", "onnx", "--triton-name", "x"), "add --format triton"),
    ],
)
def test_export_cli_triton_errors_before_exporting(tmp_path, capsys, args, words):
    code, _, err = run_export_cli(capsys, *args, "--output", tmp_path / "repo")
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: ") and words in err
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())
