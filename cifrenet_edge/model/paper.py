"""The paper's published figures, in one place, so reports print them beside measurements.

Source: Jiang et al., "Context-Integrated and Feature-Refined Network for Lightweight
Object Parsing", IEEE TIP 2020 (Table XII for speed), and ARCHITECTURE.md for the
figures an independent implementation reproduces.
"""

# Batch 1, PyTorch, GTX 1080 Ti: frames per second by (width, height).
PAPER_FPS = {
    (640, 360): 62.5,
    (512, 512): 55.6,
    (713, 713): 33.3,
    (1024, 448): 38.5,
    (1024, 512): 34.5,
}  # type: Dict[Tuple[int, int], float]
PAPER_FPS_DEVICE = "GTX 1080 Ti (PyTorch, batch 1)"

# FLOPs as the paper counts them (one multiply-add = one FLOP), in G.
PAPER_GFLOPS = {
    (640, 360): 7.3,
    (512, 512): 8.3,
    (713, 713): 16.3,
    (1024, 448): 14.4,
    (1024, 512): 16.5,
}  # type: Dict[Tuple[int, int], float]

# Parameters: the paper says "< 1.9 M"; its own parts add up to 1.94 M.
PAPER_PARAMS_M = 1.9
REFERENCE_PARAMS = 1949901  # cityscapes preset, independent implementation
PAPER_PART_PARAMS_M = {"mcim": 0.12, "dsp": 0.03, "baseline": 1.82}

PAPER_MIOU = {
    "cityscapes": {"test": 70.9, "val": 72.9},
    "camvid": {"test": 64.5},
    "helen": {"test": 71.3},
}
