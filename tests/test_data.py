"""Synthetic scenes, dataset readers on fixtures in their real layouts, specs and bad inputs."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from cifrenet_edge.data import synthetic
from cifrenet_edge.data.datasets import (
    DataSpec,
    check_dataset,
    detect_layout,
    open_dataset,
    parse_data_spec,
)
from cifrenet_edge.data.synthetic import make_scene, write_synthetic_dataset
from cifrenet_edge.data.transforms import augment
from cifrenet_edge.errors import CifreNetError, ConfigError, DatasetError
from cifrenet_edge.presets import get_preset


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


# --- synthetic scenes -------------------------------------------------------------------------


def test_scene_is_deterministic_and_seed_dependent():
    a_img, a_lab = make_scene(7, (320, 180))
    b_img, b_lab = make_scene(7, (320, 180))
    _c_img, c_lab = make_scene(8, (320, 180))
    assert a_img.shape == (180, 320, 3) and a_img.dtype == np.uint8
    assert a_lab.shape == (180, 320) and a_lab.dtype == np.uint8
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab)
    assert not np.array_equal(a_lab, c_lab)


def test_scene_labels_are_cityscapes_train_ids():
    classes = get_preset("cityscapes").classes
    named = {
        "road": synthetic.ROAD,
        "sidewalk": synthetic.SIDEWALK,
        "building": synthetic.BUILDING,
        "fence": synthetic.FENCE,
        "pole": synthetic.POLE,
        "traffic light": synthetic.LIGHT,
        "traffic sign": synthetic.SIGN,
        "vegetation": synthetic.VEGETATION,
        "terrain": synthetic.TERRAIN,
        "sky": synthetic.SKY,
        "person": synthetic.PERSON,
        "car": synthetic.CAR,
    }
    for name, tid in named.items():
        assert classes[tid] == name
    seen = np.zeros(256, bool)
    for seed in range(12):
        _, lab = make_scene(seed, (256, 144))
        seen[np.unique(lab)] = True
    allowed = set(synthetic.SCENE_CLASSES) | {255}
    assert set(np.flatnonzero(seen)) <= allowed
    # the big classes appear in a dozen scenes; the scene is not one colour lookup
    for tid in (synthetic.ROAD, synthetic.SKY, synthetic.BUILDING, synthetic.CAR):
        assert seen[tid]


def test_scene_texture_and_lighting_vary_within_a_class():
    img, lab = make_scene(3, (320, 180))
    road = img[lab == synthetic.ROAD].astype(np.float32)
    assert road.std(axis=0).mean() > 3.0  # textured, not flat
    img2, lab2 = make_scene(4, (320, 180))
    assert abs(img[lab == synthetic.SKY].mean() - img2[lab2 == synthetic.SKY].mean()) > 0.5


def test_write_synthetic_dataset_reads_back_bit_identical(tmp_path):
    summary = write_synthetic_dataset(tmp_path / "ds", 5, (160, 96), seed=10, val_fraction=0.4)
    assert summary["train"] == 3 and summary["val"] == 2
    assert (tmp_path / "ds" / "classes.json").is_file()
    ds = open_dataset(f"synthetic:{tmp_path / 'ds'}", "val")
    assert len(ds) == 2 and ds.classes == get_preset("cityscapes").classes
    img, lab = ds[0]
    ref_img, ref_lab = make_scene(13, (160, 96))  # val = the last two seeds: 13, 14
    assert np.array_equal(img, ref_img) and np.array_equal(lab, ref_lab)
    assert open_dataset(f"folder:{tmp_path / 'ds'}", "train").name(0) == "scene_000010.png"


def test_write_synthetic_dataset_rejects_zero(tmp_path):
    with pytest.raises(ConfigError):
        write_synthetic_dataset(tmp_path / "x", 0, (160, 96))


# --- spec strings -----------------------------------------------------------------------------


def test_parse_data_spec_forms():
    assert parse_data_spec("cityscapes:/data/cs") == DataSpec("cityscapes", "/data/cs")
    assert parse_data_spec("CamVid:/d") == DataSpec("camvid", "/d")
    s = parse_data_spec("synthetic:12@320x180,seed=5")
    assert (s.count, s.wh, s.seed) == (12, (320, 180), 5)
    assert parse_data_spec("synthetic:4").wh == (640, 360)
    assert parse_data_spec("synthetic:/tmp/x").count is None
    assert parse_data_spec("/some/path").kind == "auto"


@pytest.mark.parametrize(
    "spec", ["", "imagenet:/x", "cityscapes:", "synthetic:0", "synthetic:4,colour=red"]
)
def test_parse_data_spec_bad(spec):
    with pytest.raises(DatasetError) as exc:
        parse_data_spec(spec)
    _one_line(exc)


def test_synthetic_on_the_fly_splits_never_share_scenes():
    tr = open_dataset("synthetic:3@128x96", "train")
    va = open_dataset("synthetic:3@128x96", "val")
    assert len(tr) == 3 and tr.name(0) != va.name(0)
    assert not np.array_equal(tr[0][1], va[0][1])
    assert np.array_equal(tr[1][0], make_scene(1, (128, 96))[0])


# --- Cityscapes -------------------------------------------------------------------------------


@pytest.fixture()
def cityscapes_root(tmp_path) -> Path:
    root = tmp_path / "cityscapes"
    rng = np.random.default_rng(0)
    for split, city, stems in (
        ("train", "aachen", ["aachen_000000_000019"]),
        ("val", "frankfurt", ["frankfurt_000000_000294", "frankfurt_000001_000538"]),
    ):
        for stem in stems:
            _png(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                rng.integers(0, 255, (32, 64, 3), dtype=np.uint8),
            )
            lab = np.zeros((32, 64), np.uint8)  # 0 = unlabeled -> ignore
            lab[16:, :] = 7  # road -> 0
            lab[16:, :8] = 8  # sidewalk -> 1
            lab[:8, :] = 23  # sky -> 10
            lab[8:16, 20:40] = 26  # car -> 13
            lab[8:16, :4] = 1  # ego vehicle -> ignore
            lab[8:16, 50:] = 29  # caravan (trainId 255) -> ignore
            _png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", lab)
            _png(
                root / "gtFine" / split / city / f"{stem}_gtFine_color.png",
                np.zeros((32, 64, 3), np.uint8),
            )
    return root


def test_cityscapes_reader_maps_label_ids_to_train_ids(cityscapes_root):
    ds = open_dataset(f"cityscapes:{cityscapes_root}", "val")
    assert len(ds) == 2 and ds.num_classes == 19
    img, lab = ds[0]
    assert img.shape == (32, 64, 3) and lab.shape == (32, 64)
    assert lab[20, 30] == 0 and lab[20, 2] == 1 and lab[2, 2] == 10 and lab[10, 30] == 13
    assert lab[10, 1] == 255 and lab[10, 55] == 255 and lab[12, 45] == 255
    assert set(np.unique(lab)) == {0, 1, 10, 13, 255}
    assert detect_layout(cityscapes_root) == "cityscapes"
    assert len(open_dataset(str(cityscapes_root), "train")) == 1  # bare path: detected


def test_cityscapes_missing_mask(cityscapes_root):
    next((cityscapes_root / "gtFine" / "val").glob("*/*labelIds.png")).unlink()
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"cityscapes:{cityscapes_root}", "val")
    assert "2 images but 1" in _one_line(exc)


def test_cityscapes_unknown_label_id_is_an_error(cityscapes_root):
    path = next((cityscapes_root / "gtFine" / "train").glob("*/*labelIds.png"))
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    lab[0, 0] = 40
    _png(path, lab)
    ds = open_dataset(f"cityscapes:{cityscapes_root}", "train")
    with pytest.raises(DatasetError) as exc:
        ds[0]
    assert "{40}" in _one_line(exc)


def test_cityscapes_wrong_layout_says_what_was_expected_and_found(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"cityscapes:{tmp_path}", "val")
    text = _one_line(exc)
    assert "leftImg8bit" in text and "images/" in text


def test_cityscapes_missing_split(cityscapes_root):
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"cityscapes:{cityscapes_root}", "test")
    assert "test" in _one_line(exc)


# --- CamVid -----------------------------------------------------------------------------------


@pytest.fixture()
def camvid_root(tmp_path) -> Path:
    root = tmp_path / "CamVid"
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        for k in range(n):
            name = f"0001TP_{k:06d}.png"
            _png(root / split / name, np.full((24, 32, 3), 90 + k, np.uint8))
            lab = np.tile(np.arange(12, dtype=np.uint8), (24, 3))[:, :32]
            _png(root / f"{split}annot" / name, lab)
    return root


def test_camvid_reader_void_becomes_ignore(camvid_root):
    ds = open_dataset(f"camvid:{camvid_root}", "train")
    assert len(ds) == 2 and ds.classes == get_preset("camvid").classes
    _, lab = ds[1]
    assert lab[0, 0] == 0 and lab[0, 10] == 10 and lab[0, 11] == 255
    assert detect_layout(camvid_root) == "camvid"


def test_camvid_out_of_range_and_count_mismatch(camvid_root):
    lab = np.full((24, 32), 12, np.uint8)
    _png(camvid_root / "valannot" / "0001TP_000000.png", lab)
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"camvid:{camvid_root}", "val")[0]
    assert "{12}" in _one_line(exc) and "11 = void" in str(exc.value)
    _png(camvid_root / "test" / "extra.png", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"camvid:{camvid_root}", "test")
    assert "2 images but 1" in _one_line(exc)


def test_camvid_wrong_layout(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"camvid:{tmp_path}", "train")
    assert "trainannot" in _one_line(exc)


# --- generic folder ---------------------------------------------------------------------------


@pytest.fixture()
def folder_root(tmp_path) -> Path:
    root = tmp_path / "robot"
    (root).mkdir()
    (root / "classes.txt").write_text("# floor first\nfloor\nobstacle\nperson\n")
    for k in range(3):
        _png(root / "images" / f"f{k}.png", np.full((20, 30, 3), 40 * k, np.uint8))
        lab = np.zeros((20, 30), np.uint8)
        lab[:5] = 1
        lab[5:8] = 2
        lab[-1] = 255
        _png(root / "masks" / f"f{k}.png", lab)
    return root


def test_folder_reader_flat_layout(folder_root):
    ds = open_dataset(f"folder:{folder_root}", "val")
    assert ds.classes == ("floor", "obstacle", "person") and len(ds) == 3
    assert "flat" in ds.describe()
    _, lab = ds[2]
    assert set(np.unique(lab)) == {0, 1, 2, 255}
    report = check_dataset(f"folder:{folder_root}")
    assert report["items"] == 3 and report["pixels_per_class"]["person"] == 3 * 3 * 30


def test_folder_size_mismatch(folder_root):
    _png(folder_root / "masks" / "f1.png", np.zeros((10, 30), np.uint8))
    ds = open_dataset(f"folder:{folder_root}")
    with pytest.raises(DatasetError) as exc:
        ds[1]
    assert "30x20" in _one_line(exc) and "30x10" in str(exc.value)


def test_folder_bad_masks(folder_root):
    _png(folder_root / "masks" / "f0.png", np.zeros((20, 30, 3), np.uint8))
    _png(folder_root / "masks" / "f1.png", np.full((20, 30), 3, np.uint8))
    ds = open_dataset(f"folder:{folder_root}")
    with pytest.raises(DatasetError) as exc:
        ds[0]
    assert "colour" in _one_line(exc)
    with pytest.raises(DatasetError) as exc:
        ds[1]
    assert "{3}" in _one_line(exc) and "0..2" in str(exc.value)


def test_folder_pairing_and_classes_file(folder_root):
    (folder_root / "masks" / "f2.png").unlink()
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"folder:{folder_root}")
    assert "no mask for f2.png" in _one_line(exc)
    (folder_root / "classes.txt").unlink()
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"folder:{folder_root}")
    assert "classes.json" in _one_line(exc)


def test_folder_split_layout_and_missing_split(tmp_path):
    write_synthetic_dataset(tmp_path / "s", 2, (64, 48), val_fraction=0.5)
    with pytest.raises(DatasetError) as exc:
        open_dataset(f"folder:{tmp_path / 's'}", "test")
    assert "--split" in _one_line(exc)


def test_no_layout_recognised(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError) as exc:
        open_dataset(str(tmp_path))
    assert "stuff/" in _one_line(exc)
    with pytest.raises(DatasetError):
        open_dataset(f"folder:{tmp_path / 'missing'}")


# --- augmentation -----------------------------------------------------------------------------


def test_augment_shapes_labels_and_determinism():
    img, lab = make_scene(2, (160, 96))
    mean = get_preset("cityscapes").mean_bgr
    a = augment(img, lab, (96, 64), np.random.default_rng(5), mean)
    b = augment(img, lab, (96, 64), np.random.default_rng(5), mean)
    assert a[0].shape == (64, 96, 3) and a[1].shape == (64, 96)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert set(np.unique(a[1])) <= set(np.unique(lab)) | {255}  # nearest: no invented class
    # a crop bigger than a down-scaled image is padded with ignore
    c = augment(img, lab, (200, 120), np.random.default_rng(1), mean, scale_range=(0.5, 0.5))
    assert c[1].shape == (120, 200) and (c[1] == 255).mean() > 0.5


# --- CLI --------------------------------------------------------------------------------------


def test_cli_data_synth_and_check(tmp_path, capsys):
    from cifrenet_edge.cli import main

    with pytest.raises(SystemExit) as ex:
        main(["data", "synth", "--out", str(tmp_path / "d"), "--count", "3", "--res", "96x64"])
    assert ex.value.code in (0, None)
    assert len(list((tmp_path / "d" / "images" / "train").glob("*.png"))) == 2
    with pytest.raises(SystemExit) as ex:
        main(["data", "check", f"synthetic:{tmp_path / 'd'}", "--split", "val"])
    assert "1 items read OK" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ex:
        main(["data", "check", f"camvid:{tmp_path / 'd'}"])
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "trainannot" in err and err.count("\n") == 1


def test_errors_are_toolkit_errors():
    assert issubclass(DatasetError, CifreNetError)
