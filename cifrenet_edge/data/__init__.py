"""Datasets: readers for Cityscapes, CamVid, a generic folder and synthetic street scenes.

Torch-free: images and labels come back as numpy arrays (BGR uint8, trainId uint8 with
255 = ignore) so evaluation and calibration run where only the runtime is installed.
Spec strings (``cityscapes:/data/cs``, ``camvid:DIR``, ``folder:DIR``, ``synthetic:N@WxH``,
``synthetic:DIR``) are documented in ``datasets.py``.
"""

from .datasets import DataSpec, SegDataset, check_dataset, open_dataset, parse_data_spec
from .synthetic import make_scene, write_synthetic_dataset

__all__ = [
    "DataSpec",
    "SegDataset",
    "check_dataset",
    "make_scene",
    "open_dataset",
    "parse_data_spec",
    "write_synthetic_dataset",
]
