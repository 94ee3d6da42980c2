"""The three published CIFReNet configurations, as data.

One place for every per-dataset fact (class names, palette, DSP dilations,
input normalisation); the model, export metadata, datasets and runtime all
read it from here. Torch-free and Python 3.8 syntax.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .errors import ConfigError

MIN_SIDE = 32  # stride 8 inside; smaller inputs leave the MCIM with nothing to look at
MAX_SIDE = 8192

# Public code: BGR input, x = (bgr - mean) / 255, no std division.
BGR_MEAN = (73.16, 82.91, 72.39)
INPUT_SCALE = 1.0 / 255.0
IGNORE_INDEX = 255

CAMVID_CLASSES = [
    "sky",
    "building",
    "pole",
    "road",
    "sidewalk",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
]
# SegNet's CamVid colours, RGB.
CAMVID_PALETTE = [
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
]
HELEN_CLASSES = [
    "background",
    "face_skin",
    "left_eyebrow",
    "right_eyebrow",
    "left_eye",
    "right_eye",
    "nose",
    "upper_lip",
    "inner_mouth",
    "lower_lip",
    "hair",
]
HELEN_PALETTE = [
    (0, 0, 0),
    (255, 204, 153),
    (102, 51, 0),
    (153, 76, 0),
    (0, 102, 204),
    (0, 153, 255),
    (255, 128, 0),
    (204, 0, 102),
    (255, 0, 0),
    (153, 0, 76),
    (51, 25, 0),
]


def generated_palette(n: int) -> List[Tuple[int, int, int]]:
    """Distinct colours for n classes (the PASCAL VOC bit-interleaving colour map)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i + 1  # skip black: it reads as "no class" in an overlay
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


def _cityscapes_classes_and_palette():
    # type: () -> Tuple[List[str], List[Tuple[int, int, int]]]
    """The 19 train classes from the official label table, so ids never drift from it."""
    from cityscapesscripts.helpers.labels import labels

    train = sorted((lb for lb in labels if 0 <= lb.trainId < 255), key=lambda lb: lb.trainId)
    return [lb.name for lb in train], [tuple(lb.color) for lb in train]


@dataclass(frozen=True)
class Preset:
    """A published configuration: what the network needs and what deployment needs."""

    name: str
    num_classes: int
    dsp_dilations: Tuple[Tuple[int, int, int, int], ...]
    classes: Tuple[str, ...]
    palette_rgb: Tuple[Tuple[int, int, int], ...]
    train_crop_wh: Tuple[int, int]
    paper_miou: Dict[str, float] = field(default_factory=dict)
    mean_bgr: Tuple[float, float, float] = BGR_MEAN
    scale: float = INPUT_SCALE
    ignore_index: int = IGNORE_INDEX

    def metadata(self, classes: Optional[Sequence[str]] = None) -> Dict[str, object]:
        """The deployment facts a runtime needs, in JSON-ready form.

        ``classes`` overrides the class list for a model fine-tuned on a robot team's own
        classes (the checkpoint records them); such a model gets distinct generated colours.
        """
        names = list(self.classes) if classes is None else [str(c) for c in classes]
        if names == list(self.classes)[: len(names)]:
            palette = [list(c) for c in self.palette_rgb[: len(names)]]
        else:
            palette = [list(c) for c in generated_palette(len(names))]
        return {
            "preset": self.name,
            "num_classes": len(names),
            "classes": names,
            "palette_rgb": palette,
            "input_layout": "NCHW",
            "channel_order": "BGR",
            "mean_bgr": list(self.mean_bgr),
            "scale": self.scale,
            "normalization": "x = (bgr - mean_bgr) * scale",
            "ignore_index": self.ignore_index,
        }


def _build() -> Dict[str, Preset]:
    cs_names, cs_palette = _cityscapes_classes_and_palette()
    rows = (
        Preset(
            name="cityscapes",
            num_classes=19,
            dsp_dilations=((1, 2, 3, 5), (7, 9, 11, 13), (17, 19, 21, 23)),
            classes=tuple(cs_names),
            palette_rgb=tuple(cs_palette),
            train_crop_wh=(1024, 512),
            paper_miou={"test": 70.9, "val": 72.9},
        ),
        Preset(
            name="camvid",
            num_classes=11,
            dsp_dilations=((1, 2, 3, 5), (5, 7, 9, 11), (11, 13, 15, 17)),
            classes=tuple(CAMVID_CLASSES),
            palette_rgb=tuple(CAMVID_PALETTE),
            train_crop_wh=(480, 360),
            paper_miou={"test": 64.5},
        ),
        Preset(
            name="helen",
            num_classes=11,
            dsp_dilations=((1, 2, 3, 5), (3, 5, 7, 11), (7, 9, 11, 13)),
            classes=tuple(HELEN_CLASSES),
            palette_rgb=tuple(HELEN_PALETTE),
            train_crop_wh=(512, 512),
            paper_miou={"test": 71.3},
        ),
    )
    return {p.name: p for p in rows}


_PRESETS = {}  # type: Dict[str, Preset]


def presets() -> Dict[str, Preset]:
    if not _PRESETS:
        _PRESETS.update(_build())
    return _PRESETS


PRESET_NAMES = ("cityscapes", "camvid", "helen")


def get_preset(name: str) -> Preset:
    """Look a preset up by name; an unknown name is a ConfigError listing the valid ones."""
    try:
        return presets()[name.lower()]
    except KeyError:
        raise ConfigError(
            "unknown preset {!r}: use one of {}".format(name, ", ".join(PRESET_NAMES))
        ) from None


def parse_resolution(
    value: Union[str, Sequence[int]],
    max_side: int = MAX_SIDE,
    what: str = "resolution",
    min_side: int = MIN_SIDE,
) -> Tuple[int, int]:
    """'WxH' (the paper's width x height order) or (width, height) -> (width, height), each
    side min_side..max_side: the one parser for the CLI, the export and ``Segmenter.open``
    (which checks the model's own range instead, so it passes no limits)."""
    if isinstance(value, str):
        parts = value.lower().replace(" ", "").split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"malformed {what} {value!r}: write it as WIDTHxHEIGHT, e.g. 640x360")
        w, h = int(parts[0]), int(parts[1])
    else:
        try:
            w, h = (int(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{what} {value!r} is not (width, height) or 'WIDTHxHEIGHT': e.g. 640x360"
            ) from None
    if w < min_side or h < min_side:
        raise ConfigError(
            f"{what} {w}x{h} is too small: both sides must be at least {min_side} pixels"
        )
    if w > max_side or h > max_side:
        raise ConfigError(
            f"{what} {w}x{h} is too large: both sides must be at most {max_side} pixels"
        )
    return w, h


def format_resolution(wh: Tuple[int, int]) -> str:
    return f"{wh[0]}x{wh[1]}"


def presets_document() -> Dict[str, object]:
    """The presets as plain data: what `models/presets.json` holds for non-Python tools."""
    return {
        name: {
            "num_classes": p.num_classes,
            "dsp_dilations": [list(d) for d in p.dsp_dilations],
            "train_crop_wh": list(p.train_crop_wh),
            "paper_miou": dict(p.paper_miou),
            **p.metadata(),
        }
        for name, p in presets().items()
    }


if __name__ == "__main__":  # python -m cifrenet_edge.presets > models/presets.json
    import json

    print(json.dumps(presets_document(), indent=2))
