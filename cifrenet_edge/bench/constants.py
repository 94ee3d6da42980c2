"""What is benchmarked, within which limits, and what every reported number means."""

from pathlib import Path

from ..manifest import PRECISIONS  # noqa: F401  (re-exported)

SCHEMA = "cifrenet-edge/bench"
SCHEMA_VERSION = 1
BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
MAX_SIDE = 4096  # a benchmark at 8K would take minutes per query and prove nothing
MAX_BATCH = 64
FRAME_WH = (1280, 720)  # the camera frame end-to-end latency is measured on
DEFAULT_RESULTS_DIR = Path("benchmarks") / "results"
DEFAULT_CACHE_DIR = Path("models") / "cache"
CALIB_COUNT = 8  # synthetic calibration scenes for the cached INT8 models

DEFINITIONS = {
    "compute": (
        "Compute latency: the model alone, an NCHW float32 tensor already in host memory in, "
        "logits out (Backend.infer). On a GPU with TensorRT it is trtexec's 'GPU Compute "
        "Time' (CUDA events around the enqueue), with 'H2D Latency' and 'D2H Latency' apart."
    ),
    "h2d": "H2D Latency (trtexec): host-to-device copy of the input tensor of one query.",
    "d2h": "D2H Latency (trtexec): device-to-host copy of the output tensor of one query.",
    "latency": "Latency (trtexec): H2D Latency + GPU Compute Time + D2H Latency of one query.",
    "end_to_end": (
        f"End-to-end latency: a {FRAME_WH[0]}x{FRAME_WH[1]} uint8 BGR frame in, the class "
        "map at frame size out (Segmenter.predict: resize, normalise, inference, argmax, "
        "resize back), host wall clock. What a robot sees."
    ),
    "throughput": (
        "Throughput (img/s): images per second = queries x batch / Total Host Walltime of "
        "the timed queries (warm-up excluded). trtexec's Throughput counts queries (qps): at "
        "batch N a query is N images, so its row keeps throughput_qps and gives "
        "throughput_images_per_s beside it."
    ),
    "trtexec": (
        "trtexec cross-check: the same engine, like for like with our loop: --exposeDMA (one "
        "query in flight; trtexec's default keeps two), input and output copies included "
        "(--includeDataTransfers on 11.x, the default before), spin-wait (--useSpinWait "
        "before 11.x, the default from 11.0), CUDA graphs only on the graph row "
        "(--useCudaGraph before 11.x, --noCudaGraph on the other row from 11.0)."
    ),
    "fps": "FPS = 1000 x batch / median latency (ms); the paper's FPS is batch 1.",
    "percentiles": (
        "median, p90, p95, p99: numpy linear interpolation between ranks (trtexec picks the "
        "nearest rank; the two differ by less than one sample spacing)."
    ),
    "warmup": (
        "Warm-up: the first N queries of every series run and are excluded from the "
        "statistics; their times are reported (the first includes lazy allocation and "
        "autotuning)."
    ),
    "interleaving": (
        "Series are timed in interleaved blocks (A,B,C,B,C,A,...: every round in a new seeded "
        "order) so machine noise and clock changes fall on every row alike; ratios come from "
        "one run. One untimed query opens each block, so a library's idle spinning threads "
        "never bill the next one."
    ),
}
