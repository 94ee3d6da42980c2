"""Benchmarks that can be trusted: trtexec's definitions, warm-up excluded, series interleaved.

The usual ways a segmentation benchmark lies are all avoided on purpose:

* "network FPS" that ignores pre/post-processing: every row reports **compute latency**
  (``Backend.infer``, tensor in, logits out; on a GPU trtexec's *GPU Compute Time* from
  CUDA events, with *H2D* and *D2H Latency* apart) AND **end-to-end latency**
  (``Segmenter.predict``: a 1280x720 uint8 BGR frame in, the class map at frame size out);
* first-run effects: the first ``warmup`` queries of each series are run, reported, and
  excluded from the statistics;
* clock drift and neighbours on a shared machine: the series are interleaved in small
  blocks (A,B,C,A,B,C...), so a slow minute hurts every row alike and ratios stay fair;
* Python numbers that disagree with trtexec: with ``trtexec`` on the PATH the same engine
  is timed by it too and both are reported;
* a number with no reference: the paper's row and a bare ``onnxruntime.InferenceSession``
  on the same file sit beside the toolkit's rows, and the issue's target ratios are
  computed in the same run.

``run_bench`` returns a :class:`BenchReport`; ``report_to_dict`` is the versioned JSON
(``SCHEMA``/``SCHEMA_VERSION``, checked by ``check_report_dict``), ``render_report`` the
rich table and ``plot_report`` the PNG. The CLI only calls these.

Modules: ``constants`` (limits, schema id, what each number means), ``stats`` (statistics,
interleaved scheduler), ``report`` (dataclasses, JSON schema), ``system`` (machine info,
availability, option parsing), ``models`` (model cache), ``trtexec``, ``rows`` (one row
opened, timed, filled), ``run`` (``run_bench`` and its steps), ``ratios``, ``output``
(tables, JSON file, plot).
"""

from ..errors import BackendUnavailableError, CifreNetError, ConfigError, ModelFileError
from .constants import (
    BACKENDS,
    CALIB_COUNT,
    DEFAULT_CACHE_DIR,
    DEFAULT_RESULTS_DIR,
    DEFINITIONS,
    FRAME_WH,
    MAX_BATCH,
    MAX_SIDE,
    PRECISIONS,
    SCHEMA,
    SCHEMA_VERSION,
)
from .models import Prepared, calibration_dir, prepare_models, torch_checkpoint
from .output import default_output_stem, plot_report, render_report, write_report_json
from .ratios import compute_ratios
from .report import (
    BenchReport,
    BenchResult,
    Ratio,
    _paper_block,
    check_report_dict,
    report_to_dict,
)
from .rows import _trt_major
from .run import bench_frame, run_bench
from .stats import LatencyStats, Series, run_interleaved, summarize
from .system import availability, parse_choices, parse_resolutions, system_info
from .trtexec import find_trtexec, parse_trtexec_output, run_trtexec

__all__ = [
    "BACKENDS",
    "CALIB_COUNT",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_RESULTS_DIR",
    "DEFINITIONS",
    "FRAME_WH",
    "MAX_BATCH",
    "MAX_SIDE",
    "PRECISIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "BackendUnavailableError",
    "BenchReport",
    "BenchResult",
    "CifreNetError",
    "ConfigError",
    "LatencyStats",
    "ModelFileError",
    "Prepared",
    "Ratio",
    "Series",
    "_paper_block",
    "_trt_major",
    "availability",
    "bench_frame",
    "calibration_dir",
    "check_report_dict",
    "compute_ratios",
    "default_output_stem",
    "find_trtexec",
    "parse_choices",
    "parse_resolutions",
    "parse_trtexec_output",
    "plot_report",
    "prepare_models",
    "render_report",
    "report_to_dict",
    "run_bench",
    "run_interleaved",
    "run_trtexec",
    "summarize",
    "system_info",
    "torch_checkpoint",
    "write_report_json",
]
