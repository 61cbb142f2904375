"""Inference engines: one interface, several backends, picked automatically.

Contract (``Engine``): construct, ``warmup()`` once before the first frame, then
``infer(sketch)`` per frame.

* ``sketch``: (H, W, 3) uint8 BGR, the model's own sketch size (a replacement
  model's: the user's aligned face, and for a guided one its sketch beside it,
  ``model.input_shape``).
* returns (H', W', C) uint8 (``model.output_shape``), the generated photo: BGR
  (C = 3, the sketch's size), or for a replacement model the target's face and its
  mask as a fourth channel (C = 4). The returned array may be reused by the next call:
  copy it if you keep it.

Backends (``ENGINES``):

* ``torch-cuda`` — PyTorch on an NVIDIA GPU, fp16, channels_last, the whole forward
  captured once as a CUDA graph and replayed per frame (no per-layer launch cost).
* ``ort-cuda`` / ``ort-tensorrt`` — ONNX Runtime's CUDA / TensorRT providers on the
  fp16 ONNX, with IO binding so input and output stay in pre-allocated device buffers.
* ``ort-cpu`` — ONNX Runtime's CPU provider on the fp32 ONNX (fp32 is faster than
  fp16 on CPUs), with pre-allocated input/output buffers bound once.
* ``torch-cpu`` — PyTorch fp32 on the CPU; the reference the others are checked against.

All of them agree with ``torch-cpu`` within ``TOLERANCE`` (uint8 levels) on the same
sketch: tests/test_engines.py checks every engine of ``ENGINES`` that can run on the
machine at hand and skips the others with the reason; ``tests/test_gpu.py`` adds the
CUDA-graph checks of ``torch-cuda``. ``ort-cuda`` and ``ort-tensorrt`` need
onnxruntime-gpu's CUDA libraries and have not yet run on a GPU this project had.

The engine names are ``models.config.ENGINE_NAMES``, the one list that the
``live.engine`` setting and this registry both derive from.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from models.artifact import CPU_TIER, ArtifactError, ModelDir, check_model_path, export_advice
from models.config import ENGINE_NAMES
from models.terminal import usable_cores
from models.pixels import image_to_input, images_to_tensor, levels_from_unit, output_to_image, unit_from_levels_
from models.errors import DeviceError
from models.hotpath import per_frame

# Max mean-absolute difference (uint8 levels) between an engine and torch-cpu.
TOLERANCE = {"fp32": 0.5, "fp16": 2.0}


class EngineError(DeviceError):
    """An engine cannot run here; the message says why and what to do instead."""


@runtime_checkable
class Engine(Protocol):
    name: str
    precision: str  # "fp32" or "fp16": what the tolerance against torch-cpu is
    shape: tuple[int, int, int]  # (H, W, 3): the sketch it takes and the photo it returns

    def warmup(self) -> None: ...

    @per_frame
    def infer(self, sketch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


def _check_sketch(sketch: np.ndarray, shape: tuple[int, int, int]) -> None:
    if sketch.shape != shape or sketch.dtype != np.uint8:
        raise ValueError(f"engine input must be a uint8 {shape} sketch, got {sketch.dtype} {sketch.shape}")


def nvidia_driver_present() -> bool:
    """True when the NVIDIA driver's CUDA library loads (a GPU engine can possibly run)."""
    import ctypes

    for name in ("libcuda.so.1", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


GPU_ENGINES = ("torch-cuda", "ort-cuda", "ort-tensorrt")


SMALL_MODEL = 10_000_000  # generator parameters up to which a model is already CPU-sized (the cpu preset: 2.45 M)


def _parameters(model_dir: Path) -> float:
    """The generator's parameter count from model.json (inf when unknown)."""
    import json

    try:
        return float(json.loads((model_dir / "model.json").read_text())["parameters"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("inf")


def choose_model_dir(path: str | os.PathLike, *, engine: str, tier: str, gpu: bool) -> tuple[Path, str]:
    """Which model directory live loads from ``path``: the full model, or its CPU tier
    (``path/cpu``) when no GPU engine will run. ``engine`` and ``tier`` are the
    ``[live]`` settings; ``gpu`` whether an NVIDIA driver is present.
    Returns (directory, why), the reason in words for the log and ``reenact doctor``."""
    p = check_model_path(path)  # a missing or mistyped path is named as such, before any advice about tiers
    cpu = p / CPU_TIER
    has_cpu = (cpu / "model.json").is_file()
    make = f"derive one with `reenact train DATASET --teacher {p} --preset cpu`"
    if tier == "full":
        return p, "live.model_tier = full"
    if tier == "cpu":
        if not has_cpu:
            raise ArtifactError(f"live.model_tier = cpu but {p} has no CPU model ({cpu}); {make}")
        return cpu, "live.model_tier = cpu"
    if engine in GPU_ENGINES:
        return p, f"live.engine = {engine} runs the full-size model"
    if not has_cpu:
        if gpu or _parameters(p) <= SMALL_MODEL:
            return p, "the model itself" + ("" if gpu else ", small enough for CPU cores")
        return p, f"the model has no CPU tier; with no NVIDIA GPU a full-size model is slow: {make}"
    if engine != "auto":
        return cpu, f"live.engine = {engine}: its CPU model"
    if gpu:
        return p, "an NVIDIA driver is present: the full-size model (live.model_tier = cpu forces the CPU model)"
    return cpu, "no NVIDIA GPU: the distilled CPU model, made for real time on CPU cores"


class OrtEngine:
    """ONNX Runtime. ``provider``: 'cpu', 'cuda' or 'tensorrt'."""

    def __init__(self, model: ModelDir, *, provider: str = "cpu", threads: int | None = None, spin: bool = False) -> None:
        import onnxruntime as ort

        self.precision = "fp32" if provider == "cpu" else "fp16"
        self.name = f"ort-{provider}"
        path = model.file(f"generator_{self.precision}.onnx")
        props = model.check_onnx(path)  # the ONNX must have been exported for this model's sketch (or alignment)
        self.advice = export_advice(model, props)  # for the log: an older export that a new one would speed up
        providers = {"cpu": ["CPUExecutionProvider"],
                     "cuda": [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE"}), "CPUExecutionProvider"],
                     "tensorrt": [("TensorrtExecutionProvider", {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                                                 "trt_engine_cache_path": str(model.path / "trt_cache")}),
                                  "CUDAExecutionProvider", "CPUExecutionProvider"]}[provider]
        wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
        if provider != "cpu" and not nvidia_driver_present():
            raise EngineError(f"{self.name}: no NVIDIA driver (libcuda) on this machine")
        if wanted not in ort.get_available_providers():
            raise EngineError(f"{self.name}: ONNX Runtime here has no {wanted} (available: {', '.join(ort.get_available_providers())})")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        so.intra_op_num_threads = threads or min(4, usable_cores())  # two threads on one allowed core would fight
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        if not spin:
            # Between inferences its worker threads would spin, burning a core that Face Mesh,
            # the capture thread and the call app need; asleep, they cost a wake-up instead.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        if self.session.get_providers()[0] != wanted:
            raise EngineError(f"{self.name}: {wanted} failed to initialise (session uses {self.session.get_providers()[0]})")
        self.shape = h, w, _ = model.input_shape
        oh, ow, c = model.output_shape
        dtype = np.float16 if self.precision == "fp16" else np.float32
        self._in = np.empty((1, 3, h, w), dtype)
        self._out = np.empty((1, c, oh, ow), dtype)
        self._image = np.empty((oh, ow, c), np.uint8)
        self._device = "cpu" if provider == "cpu" else "cuda"
        self._binding = self.session.io_binding()
        name_in, name_out = self.session.get_inputs()[0].name, self.session.get_outputs()[0].name  # sketch/photo, face/swapped
        if self._device == "cpu":
            # Bind the pre-allocated host buffers once; each frame only refills them.
            self._binding.bind_cpu_input(name_in, self._in)
            self._binding.bind_output(name_out, "cpu", 0, dtype, self._out.shape, self._out.ctypes.data)
        else:
            self._in_dev = ort.OrtValue.ortvalue_from_numpy(self._in, "cuda", 0)
            self._out_dev = ort.OrtValue.ortvalue_from_shape_and_type(self._out.shape, dtype, "cuda", 0)
            self._binding.bind_ortvalue_input(name_in, self._in_dev)
            self._binding.bind_ortvalue_output(name_out, self._out_dev)

    def warmup(self) -> None:
        for _ in range(3):
            self.infer(np.zeros(self.shape, np.uint8))

    @per_frame
    def infer(self, sketch: np.ndarray) -> np.ndarray:
        _check_sketch(sketch, self.shape)
        image_to_input(sketch, self._in)
        if self._device == "cpu":
            self.session.run_with_iobinding(self._binding)
            return output_to_image(self._out, self._image)
        self._in_dev.update_inplace(self._in)
        self.session.run_with_iobinding(self._binding)
        return output_to_image(self._out_dev.numpy(), self._image)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


class TorchEngine:
    """PyTorch. On CUDA: fp16, channels_last and a captured CUDA graph; on CPU: fp32 eager."""

    def __init__(self, model: ModelDir, *, device: str = "cuda", cuda_graph: bool = True) -> None:
        import torch

        from models.artifact import load_generator

        if device == "cuda" and not torch.cuda.is_available():
            raise EngineError("torch-cuda: PyTorch sees no CUDA GPU here (CPU build of torch, or no NVIDIA driver)")
        self.torch = torch
        self.device = torch.device(device)
        self.precision = "fp16" if device == "cuda" else "fp32"
        self.name = f"torch-{device}"
        self.shape = h, w, _ = model.input_shape
        g = load_generator(model, self.device)
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if device == "cuda":
            g = g.to(dtype=dtype, memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        self.g = g
        out_shape = model.output_shape
        self._in = torch.zeros(1, 3, h, w, device=self.device, dtype=dtype)
        if device == "cuda":
            self._in = self._in.contiguous(memory_format=torch.channels_last)
            self._host = torch.empty(self.shape, dtype=torch.uint8, pin_memory=True)
            self._host_out = torch.empty(out_shape, dtype=torch.uint8, pin_memory=True)
        self._graph = None
        self._use_graph = cuda_graph and device == "cuda"
        self._image = np.empty(out_shape, np.uint8)

    def _forward(self):
        # uint8 -> [-1, 1] happens on the device; so does the way back.
        y = self.g(self._in)
        return levels_from_unit(y)[0].permute(1, 2, 0)

    def warmup(self) -> None:
        torch = self.torch
        with torch.inference_mode():
            if self.device.type == "cuda":
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):  # cuDNN autotuning happens here, outside the graph
                        self._out = self._forward()
                torch.cuda.current_stream().wait_stream(s)
                if self._use_graph:
                    self._graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(self._graph):
                        self._out = self._forward()
                torch.cuda.synchronize()
            else:
                for _ in range(2):
                    self._forward()

    @per_frame
    def infer(self, sketch: np.ndarray) -> np.ndarray:
        _check_sketch(sketch, self.shape)
        torch = self.torch
        with torch.inference_mode():
            if self.device.type == "cuda":
                self._host.numpy()[:] = sketch
                dev = self._host.to(self.device, non_blocking=True).permute(2, 0, 1)[None]
                self._in.copy_(unit_from_levels_(dev.to(self._in.dtype)))
                if self._graph is not None:
                    self._graph.replay()
                else:
                    self._out = self._forward()
                self._host_out.copy_(self._out)
                torch.cuda.current_stream().synchronize()
                self._image[:] = self._host_out.numpy()
                return self._image
            x = images_to_tensor(sketch[None])
            self._in.copy_(x)
            self._image[:] = self._forward().numpy()
            return self._image

    def close(self) -> None:
        self._graph = None


_FACTORIES: dict[str, Callable[[ModelDir, int], Engine]] = {
    "torch-cuda": lambda m, t: TorchEngine(m, device="cuda"),
    "ort-tensorrt": lambda m, t: OrtEngine(m, provider="tensorrt"),
    "ort-cuda": lambda m, t: OrtEngine(m, provider="cuda"),
    "ort-cpu": lambda m, t: OrtEngine(m, provider="cpu", threads=t or None),
    "torch-cpu": lambda m, t: TorchEngine(m, device="cpu"),
}
# name -> factory(model, cpu_threads); cpu_threads 0 = the engine's default. A name in
# ENGINE_NAMES without a factory fails here, at import, not when a user picks it.
ENGINES: dict[str, Callable[[ModelDir, int], Engine]] = {name: _FACTORIES[name] for name in ENGINE_NAMES}

# Tried in this order by "auto": the fastest that can run here wins.
AUTO_ORDER = ("torch-cuda", "ort-cuda", "ort-cpu", "torch-cpu")


def create_engine(model: ModelDir, choice: str = "auto", *, log: Callable[[str], None] = print, cpu_threads: int = 0) -> Engine:
    """Build (and warm up) the engine named by ``choice``, or the first of
    ``AUTO_ORDER`` that can run here. Each skipped engine is logged with its reason, and
    an engine's ``advice`` (an ONNX file an earlier version exported slower) too."""
    if choice != "auto":
        if choice not in ENGINES:
            raise EngineError(f"unknown engine {choice!r}; choose one of: auto, {', '.join(ENGINES)}")
        engine = ENGINES[choice](model, cpu_threads)
        engine.warmup()
        return _advised(engine, log)
    reasons = []
    for name in AUTO_ORDER:
        try:
            engine = ENGINES[name](model, cpu_threads)
            engine.warmup()
            if reasons:
                log(f"engine: {name} (skipped: {'; '.join(reasons)})")
            return _advised(engine, log)
        except (EngineError, ArtifactError) as e:
            reasons.append(str(e))
        except Exception as e:  # noqa: BLE001 - a backend failing to start must not stop the others
            reasons.append(f"{name}: {type(e).__name__}: {e}")
    raise EngineError("no inference engine can run here:\n  " + "\n  ".join(reasons))


def _advised(engine: Engine, log: Callable[[str], None]) -> Engine:
    if getattr(engine, "advice", None):
        log(engine.advice)
    return engine
