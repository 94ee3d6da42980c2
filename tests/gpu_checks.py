#!/usr/bin/env python3
"""What a GPU without TensorRT can verify of the TensorRT path, in one run, into one JSON file.

The lent GPU machines have CUDA, CuPy, cuda-python and PyTorch but no TensorRT (its
libraries cannot be fetched there). This script verifies on the real device:

1. ``cuda_wrapper``: ``trt/cuda.py``'s CudaPython: pinned buffers, device memory, a
   non-blocking stream, events, and a CUDA graph (copy in, a PyTorch kernel, copy out)
   replayed on new host data, while another thread uses the legacy stream.
2. ``tensorrt_backend_*``: the real TensorRT backend over real device memory, with the strict
   stand-in ``tensorrt`` of ``tests/support/trt_sim.py`` whose engine runs the network itself with
   PyTorch on the backend's device pointers and stream: the 8.6 binding API and the 10.x
   tensor API, fixed and dynamic shapes, 4 threads, ``close()`` racing ``predict``, the
   CUDA-graph path (8.6 and 10.x) and ``benchmark_gpu``; outputs against PyTorch on the same input.
3. ``gpu_argmax``: CuPy's argmax on the engine's output (``predict_frame``) against the
   host path.
4. ``bench_torch_rows``: ``bench``'s PyTorch CUDA FP32 and FP16 rows (the paper's setting).

A failed check is a failure (exit 1, ``FAILED`` lines and the reason in the JSON), never a
skip. The JSON is rewritten after every check, so a run cut short by a timeout keeps each
finished result (``"complete": false``, the hung check under ``"running"``). Nothing is
installed. ``--dry-run`` runs the same checks on the simulated CUDA of ``tests/support/cuda_sim.py``
with PyTorch on the CPU (no GPU needed): CI runs it that way.

    python3 tests/gpu_checks.py [--dry-run] [--out DIR] [--res 640x360] [--seconds 2]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import platform
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "cifrenet-edge/gpu-checks"


def _import_stand_ins() -> Any:
    """``tests/support/trt_sim.py``: the strict stand-in ``tensorrt`` (no pytest needed)."""
    for p in (str(ROOT), str(ROOT / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)
    return importlib.import_module("support.trt_sim")


class Machine:
    """The device under test: real (CUDA, PyTorch on cuda:0, CuPy) or the simulated one."""

    def __init__(self, dry_run: bool, res: Tuple[int, int], work: Path) -> None:
        import torch

        self.dry_run, self.res = dry_run, res
        #: timed iterations of benchmark_gpu (the dry run only walks the code)
        self.iters, self.warmup = (3, 1) if dry_run else (20, 5)
        if dry_run:
            torch.set_num_threads(1)  # CI machines are small and shared
        self.sim = _import_stand_ins()
        if not dry_run and not torch.cuda.is_available():
            raise RuntimeError("PyTorch sees no CUDA device: run on the GPU machine, or --dry-run")
        self.torch_device = "cpu" if dry_run else "cuda:0"
        self.model, self.ckpt = _content_model(self.torch_device, work)
        if dry_run:
            self.cuda = self.sim.SimGpu("10.16", "13.4.4").cuda
            self.rt = self.cuda.rt
        else:
            from cifrenet_edge.trt.cuda import CudaPython

            self.cuda = CudaPython(0)
            self.rt = self.cuda.rt

    # the engine's network, and the reference it is compared with -------------------------
    def reference(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.torch_device)
            return self.model(t).float().cpu().numpy()

    def gpu(self, trt_version: str) -> Any:
        """A stand-in TensorRT of ``trt_version`` on this machine."""
        if self.dry_run:
            ref = self.reference

            class TorchCpu:
                def __call__(self, x):
                    return ref(x)

                def output_shape(self, shape):
                    return (shape[0], 19, shape[2], shape[3])

            holder: Dict[str, Any] = {}

            def executor_for(header):
                return self.sim.SimExecutor(holder["g"].sim, TorchCpu(), 1.0)

            g = self.sim.SimGpu(trt_version, "13.4.4", executor_for=executor_for)
            holder["g"] = g
            return g
        exe = self.sim.TorchDeviceExecutor(self.model, 19, self.torch_device)
        return self.sim.SimGpu(trt_version, executor_for=lambda header: exe, cuda=self.cuda)

    def engine(self, g: Any, folder: Path, dynamic: Optional[Dict[str, Any]] = None) -> Path:
        w, h = self.res
        # The engine "file" names a model; the torch executor ignores it, the header the rest.
        return g.write_engine(folder, self.ckpt, (1, 3, h, w), dynamic=dynamic)


def _content_model(device: str, work: Path) -> Tuple[Any, Path]:
    """CIFReNet (seed 0) with BatchNorm statistics from synthetic street scenes.

    Untrained weights with default BatchNorm statistics give one class everywhere, which
    would make the argmax comparison vacuous; re-estimated statistics make the class map
    follow the image (as tests/conftest.py does with photographs).
    """
    from cifrenet_edge.data.synthetic import make_scene
    from cifrenet_edge.model.linear_probe import content_model
    from cifrenet_edge.model.weights import save_checkpoint

    model = content_model([make_scene(seed, (256, 128))[0] for seed in range(4)], (256, 128))
    ckpt = work / "content.pth"
    save_checkpoint(model, ckpt)
    return model.to(device), ckpt


def _close_enough(got: np.ndarray, want: np.ndarray, what: str) -> float:
    err = float(np.abs(got - want).max())
    scale = max(1.0, float(np.abs(want).max()))
    if got.shape != want.shape or not err <= 1e-3 * scale:
        raise AssertionError(f"{what}: max |diff| {err:.3g} (shape {got.shape} vs {want.shape})")
    return err


def _inputs(m: Machine, n: int, shape: Optional[Tuple[int, ...]] = None) -> List[np.ndarray]:
    w, h = m.res
    rng = np.random.default_rng(0)
    return [rng.normal(0, 1, shape or (1, 3, h, w)).astype(np.float32) for _ in range(n)]


# --------------------------------------------------------------------------- the checks
def check_cuda_wrapper(m: Machine, work: Path) -> Dict[str, Any]:
    cuda = m.cuda
    n = (1 << 20) if not m.dry_run else (1 << 12)
    out: Dict[str, Any] = {"library": cuda.library, "floats": n}
    with cuda.activate():
        out["device"] = cuda.device_info()
        s = cuda.stream_create()
        src = cuda.pinned_empty((n,), np.float32)
        dst = cuda.pinned_empty((n,), np.float32)
        d_in, d_out = cuda.malloc(src.nbytes), cuda.malloc(src.nbytes)
        e0, e1 = cuda.event_create(), cuda.event_create()
        try:
            src[:] = np.arange(n, dtype=np.float32)
            cuda.event_record(e0, s)
            cuda.htod_async(d_in, src, s)
            cuda.dtoh_async(dst, d_in, s)
            cuda.event_record(e1, s)
            cuda.stream_sync(s)
            if not np.array_equal(dst, src):
                raise AssertionError("pinned -> device -> pinned round trip changed the data")
            out["roundtrip_ms"] = cuda.event_elapsed_ms(e0, e1)
            if not out["roundtrip_ms"] > 0:
                raise AssertionError(f"event time {out['roundtrip_ms']} ms is not positive")
            double = _doubler(m, d_in, d_out, n, cuda.stream_handle(s))
            double()  # plain run first: the kernel's library sets itself up outside capture
            cuda.stream_sync(s)
            d_other = cuda.malloc(4096)  # allocated and freed outside the capture
            try:
                cuda.graph_capture_begin(s)
                try:
                    cuda.htod_async(d_in, src, s)
                    double()
                    cuda.dtoh_async(dst, d_out, s)
                    other = _legacy_stream_user(m, d_other)  # stream 0, another thread
                finally:
                    graph = cuda.graph_capture_end(s)
            finally:
                cuda.free(d_other)
            if other != "cudaSuccess":
                raise AssertionError(f"legacy-stream copy during our capture: {other}")
            try:
                for value in (1.5, -2.0, 7.0):
                    src[:] = value
                    cuda.graph_launch(graph, s)
                    cuda.stream_sync(s)
                    if not np.all(dst == 2 * value):
                        raise AssertionError(f"graph replay read stale data ({dst[:3]})")
            finally:
                cuda.graph_destroy(graph)
            out["graph_replays"] = 3
        finally:
            for ev in (e0, e1):
                cuda.event_destroy(ev)
            cuda.free(d_in)
            cuda.free(d_out)
            cuda.free_pinned(src)
            cuda.free_pinned(dst)
            cuda.stream_destroy(s)
    return out


def _doubler(m: Machine, d_in: int, d_out: int, n: int, handle: int) -> Callable[[], None]:
    """y = 2x on the stream: a PyTorch kernel on the device, a simulated one in dry-run."""
    if m.dry_run:
        sim = m.cuda.rt

        def run():
            x = np.frombuffer(sim.read(d_in, 4 * n), np.float32)
            sim.write(d_out, (2 * x).astype(np.float32).tobytes())

        return lambda: sim.enqueue_kernel(
            handle, "double", run, [(d_in, 4 * n), (d_out, 4 * n)], 0.1
        )
    import torch

    x = torch.as_tensor(m.sim._CudaArray(d_in, (n,), np.float32), device="cuda:0")
    y = torch.as_tensor(m.sim._CudaArray(d_out, (n,), np.float32), device="cuda:0")
    stream = torch.cuda.ExternalStream(handle, device="cuda:0")

    def run_torch():
        with torch.cuda.stream(stream):
            torch.mul(x, 2.0, out=y)

    return run_torch


def _legacy_stream_user(m: Machine, ptr: int) -> str:
    """Another library's synchronous cudaMemcpy (legacy stream), from another thread.

    Legal while a *non-blocking* stream captures (CUDA docs, cudaStreamIsCapturing); with a
    blocking stream it is cudaErrorStreamCaptureImplicit and the capture is invalidated.
    """
    rt = m.rt
    host = np.ones(1024, np.float32)
    result: Dict[str, str] = {}

    def other():
        try:
            rt.cudaSetDevice(0)
            kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
            result["err"] = getattr(
                rt.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, kind)[0], "name", "?"
            )
        except Exception as exc:  # reported, and the check fails on it
            result["err"] = f"{type(exc).__name__}: {exc}"

    t = threading.Thread(target=other)
    t.start()
    t.join(30)
    return result.get("err", "thread did not finish")


def _backend_matches(m: Machine, version: str, work: Path, **kw: Any) -> Dict[str, Any]:
    g = m.gpu(version)
    eng = m.engine(g, work / f"fixed_{version}")
    errs = []
    with g.installed():
        b = g.open(eng, **kw)
        try:
            for x in _inputs(m, 3):
                errs.append(_close_enough(b.infer(x), m.reference(x), f"TensorRT {version}"))
            api = b.describe()["execution_api"]
        finally:
            b.close()
    _no_leaks(g)
    return {"execution_api": api, "max_abs_diff": max(errs)}


def _no_leaks(g: Any) -> None:
    if g.sim is not None:
        import gc

        gc.collect()
        live = {k: v for k, v in g.sim.live().items() if v}
        if live or g.sim.faults:
            raise AssertionError(f"after close: live {live}, faults {g.sim.faults[:2]}")


def check_backend_binding_api(m: Machine, work: Path) -> Dict[str, Any]:
    return _backend_matches(m, "8.2.1", work)  # binding indices + execute_async_v2


def check_backend_tensor_api(m: Machine, work: Path) -> Dict[str, Any]:
    return _backend_matches(m, "10.16", work)


def check_backend_dynamic(m: Machine, work: Path) -> Dict[str, Any]:
    w, h = m.res
    dyn = {"min": [w // 2, h // 2], "opt": [w, h], "max": [w, h], "batch": [1, 1, 2]}
    g = m.gpu("10.16")
    eng = m.engine(g, work / "dynamic", dynamic=dyn)
    shapes = [(1, 3, h, w), (2, 3, h // 2, w // 2), (1, 3, h, w)]
    errs = []
    with g.installed():
        b = g.open(eng)
        try:
            for shape in shapes:
                (x,) = _inputs(m, 1, shape)
                errs.append(_close_enough(b.infer(x), m.reference(x), f"shape {shape}"))
        finally:
            b.close()
    _no_leaks(g)
    return {"shapes": [list(s) for s in shapes], "max_abs_diff": max(errs)}


def check_backend_four_threads(m: Machine, work: Path) -> Dict[str, Any]:
    g = m.gpu("10.16")
    eng = m.engine(g, work / "threads")
    inputs = {k: _inputs(m, 3) for k in range(4)}
    for k in inputs:  # each thread its own data
        inputs[k] = [x * (k + 1) for x in inputs[k]]
    wants = {k: [m.reference(x) for x in xs] for k, xs in inputs.items()}
    failures: List[str] = []
    with g.installed():
        b = g.open(eng, max_contexts=4)
        try:

            def work_(k: int) -> None:
                try:
                    for x, want in zip(inputs[k], wants[k]):
                        _close_enough(b.infer(x), want, f"thread {k}")
                except Exception as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")

            threads = [threading.Thread(target=work_, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        finally:
            b.close()
    if failures:
        raise AssertionError("; ".join(failures[:2]))
    _no_leaks(g)
    contexts = g.rec.names().count("ICudaEngine.create_execution_context")
    if contexts != 4:
        raise AssertionError(f"{contexts} execution contexts for 4 threads")
    return {"threads": 4, "contexts": contexts}


def check_close_racing_predict(m: Machine, work: Path) -> Dict[str, Any]:
    from cifrenet_edge.errors import ClosedError

    g = m.gpu("10.16")
    eng = m.engine(g, work / "race")
    (x,) = _inputs(m, 1)
    want = m.reference(x)
    counts = {"ok": 0, "closed": 0}
    bad: List[str] = []
    lock = threading.Lock()
    with g.installed():
        b = g.open(eng, max_contexts=2)

        def loop() -> None:
            for _ in range(1000):
                try:
                    _close_enough(b.infer(x), want, "racing call")
                    with lock:
                        counts["ok"] += 1
                except ClosedError:
                    with lock:
                        counts["closed"] += 1
                    return
                except Exception as exc:
                    bad.append(f"{type(exc).__name__}: {exc}")
                    return

        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        while counts["ok"] < 8 and all(t.is_alive() for t in threads):
            time.sleep(0.01)
        b.close()
        for t in threads:
            t.join(60)
    if bad:
        raise AssertionError("a call racing close() raised " + bad[0])
    if counts["closed"] != 4:
        raise AssertionError(f"{counts['closed']} of 4 threads saw ClosedError")
    _no_leaks(g)
    return counts


def check_cuda_graph_path(m: Machine, work: Path) -> Dict[str, Any]:
    """Capture, replay and benchmark_gpu with graphs, on 8.6 (the 1080 Ti's) and 10.x."""
    out: Dict[str, Any] = {}
    for version in ("8.6.1", "10.16"):
        g = m.gpu(version)
        eng = m.engine(g, work / f"graph_{version}")
        errs = []
        with g.installed():
            b = g.open(eng, cuda_graph=True)
            try:
                for x in _inputs(m, 3):  # capture once, then each replay reads the new input
                    errs.append(_close_enough(b.infer(x), m.reference(x), "graph replay"))
                graph = b.benchmark_gpu(iters=m.iters, warmup=m.warmup, cuda_graph=True)
                plain = b.benchmark_gpu(iters=m.iters, warmup=m.warmup, cuda_graph=False)
            finally:
                b.close()
        _no_leaks(g)
        for name, stats in (("graph", graph), ("plain", plain)):
            if not (min(stats["compute"]) > 0 and stats["walltime_s"] > 0):
                raise AssertionError(f"{version} {name} benchmark_gpu: non-positive times")
        out[version] = {
            "max_abs_diff": max(errs),
            "compute_ms_median": {
                "graph": float(np.median(graph["compute"])),
                "plain": float(np.median(plain["compute"])),
            },
            "walltime_s": {"graph": graph["walltime_s"], "plain": plain["walltime_s"]},
        }
    return out


def check_gpu_argmax(m: Machine, work: Path) -> Dict[str, Any]:
    """CuPy's argmax on the engine's output buffer == the host path, on street scenes."""
    from cifrenet_edge.data.synthetic import make_scene
    from cifrenet_edge.preprocess import preprocess
    from cifrenet_edge.presets import get_preset
    from cifrenet_edge.runtime.postprocess import argmax_classes, resize_mask

    if not m.dry_run:
        import cupy  # noqa: F401  (missing CuPy fails the check, loudly)
    meta = get_preset("cityscapes").metadata()
    g = m.gpu("10.16")
    eng = m.engine(g, work / "argmax")
    classes = set()
    with g.installed(cupy=True):
        b = g.open(eng, gpu_argmax=True)
        try:
            for seed in range(3):
                frame = make_scene(100 + seed, (1280, 720))[0]
                fast = b.predict_frame(frame)
                x = preprocess(frame, m.res, meta["mean_bgr"], meta["scale"])
                host = resize_mask(argmax_classes(b.infer(x)[0]), (1280, 720))
                same = float((fast == host).mean())
                if fast.dtype != np.uint8 or same != 1.0:
                    raise AssertionError(f"GPU argmax agrees on {same:.4f} of the pixels")
                classes |= set(np.unique(host).tolist())
        finally:
            b.close()
    if len(classes) < 2:
        raise AssertionError("one class everywhere: the comparison would prove nothing")
    return {"frames": 3, "classes_seen": len(classes)}


def check_bench_torch_rows(m: Machine, work: Path, seconds: float) -> Dict[str, Any]:
    from cifrenet_edge import bench

    precisions = ["fp32"] if m.dry_run else ["fp32", "fp16"]
    report = bench.run_bench(
        resolutions=[m.res],
        model=str(m.ckpt),
        backends=["torch"],
        precisions=precisions,
        warmup=1 if m.dry_run else 3,
        iters=3 if m.dry_run else None,
        seconds=seconds,
        cache=str(work / "cache"),
        bare_onnxruntime=False,
        trtexec=False,
    )
    d = bench.report_to_dict(report)
    rows = [r for r in d["results"] if r["backend"] == "torch"]
    bad = [f"{r['precision']}: {r['status']} {r['reason']}" for r in rows if r["status"] != "ok"]
    if bad or len(rows) != len(precisions):
        raise AssertionError("bench PyTorch rows: " + ("; ".join(bad) or f"{len(rows)} rows"))
    want_device = "cpu" if m.dry_run else "cuda"
    for r in rows:
        if not str(r["device"]).startswith(want_device):
            raise AssertionError(f"torch {r['precision']} ran on {r['device']}, not {want_device}")
    return {"report": d}


CHECKS = [
    ("cuda_wrapper", check_cuda_wrapper),
    ("tensorrt_backend_binding_api", check_backend_binding_api),
    ("tensorrt_backend_tensor_api", check_backend_tensor_api),
    ("tensorrt_backend_dynamic_shapes", check_backend_dynamic),
    ("tensorrt_backend_four_threads", check_backend_four_threads),
    ("tensorrt_backend_close_racing_predict", check_close_racing_predict),
    ("tensorrt_backend_cuda_graph", check_cuda_graph_path),
    ("gpu_argmax", check_gpu_argmax),
]


def environment() -> Dict[str, Any]:
    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "host": socket.gethostname(),
        "machine": platform.machine(),
    }
    for mod in ("numpy", "torch", "cupy", "cuda.bindings", "cv2", "onnxruntime", "tensorrt"):
        try:
            env[mod] = str(getattr(importlib.import_module(mod), "__version__", "present"))
        except Exception as exc:
            env[mod] = f"missing ({type(exc).__name__})"
    return env


def run(dry_run: bool, out_dir: Path, res: Tuple[int, int], seconds: float) -> Tuple[Path, bool]:
    """All checks; the JSON file is rewritten after each one (a timeout keeps what finished).

    While checks run the file says ``"complete": false`` and ``"ok": false``, with the check
    in progress under ``"running"``; a run killed by ``timeout`` (run_gpu.sh's 8 minutes, or
    the lent machine's limit) so leaves every finished result and the name of the one that
    hung. Each write goes to a temporary name and is renamed: never a half-written file.
    """
    t_start = time.perf_counter()
    result: Dict[str, Any] = {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "dry-run (simulated CUDA, PyTorch on the CPU)" if dry_run else "gpu",
        "resolution": list(res),
        "environment": environment(),
        "complete": False,
        "ok": False,
        "running": None,
        "checks": [],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["created"].replace(":", "").replace("-", "")
    mode = "dryrun" if dry_run else "gpu"
    path = out_dir / f"gpu_checks_{mode}_{result['environment']['host']}_{stamp}.json"

    def save(running: Optional[str]) -> None:
        result["running"] = running
        result["elapsed_s"] = round(time.perf_counter() - t_start, 2)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=1, default=str))
        tmp.replace(path)

    checks: List[Dict[str, Any]] = result["checks"]
    work = Path(tempfile.mkdtemp(prefix="gpu_checks_"))
    save("setup")
    try:
        _run_checks(checks, dry_run, res, seconds, work, save)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["complete"] = True
    result["ok"] = bool(checks) and all(c["status"] == "ok" for c in checks)
    save(None)
    return path, result["ok"]


def _run_checks(
    checks: List[Dict[str, Any]],
    dry_run: bool,
    res: Tuple[int, int],
    seconds: float,
    work: Path,
    save: Callable[[Optional[str]], None],
) -> None:
    try:
        machine: Optional[Machine] = Machine(dry_run, res, work)
    except Exception as exc:
        machine = None
        checks.append(_failed("setup", exc, 0.0))
    if machine is not None:
        plan = [*CHECKS, ("bench_torch_rows", lambda m, w: check_bench_torch_rows(m, w, seconds))]
        for name, fn in plan:
            save(name)
            t0 = time.perf_counter()
            try:
                details = fn(machine, work)
                checks.append(
                    {
                        "name": name,
                        "status": "ok",
                        "seconds": round(time.perf_counter() - t0, 2),
                        "details": details,
                    }
                )
                print(f"ok      {name} ({checks[-1]['seconds']} s)", flush=True)
            except Exception as exc:
                checks.append(_failed(name, exc, time.perf_counter() - t0))
    save(None)


def _failed(name: str, exc: BaseException, seconds: float) -> Dict[str, Any]:
    line = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    print(f"FAILED  {name}: {line}", flush=True)
    return {
        "name": name,
        "status": "failed",
        "seconds": round(seconds, 2),
        "error": line,
        "traceback": traceback.format_exc(limit=8),
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="simulated CUDA, PyTorch on the CPU")
    ap.add_argument("--out", default=None, help="results folder ($OUT or benchmarks/results)")
    ap.add_argument("--res", default=None, help="WxH (default 640x360; dry-run 128x64)")
    ap.add_argument("--seconds", type=float, default=2.0, help="per bench series")
    args = ap.parse_args(argv)
    import os

    out = Path(args.out or os.environ.get("OUT") or (ROOT / "benchmarks" / "results"))
    res_text = args.res or ("128x64" if args.dry_run else "640x360")
    w, h = (int(v) for v in res_text.lower().split("x"))
    path, ok = run(args.dry_run, out, (w, h), args.seconds)
    print(f"{'all checks passed' if ok else 'CHECKS FAILED'}: {path}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
