"""``config.toml``: parsed once into frozen, typed sections.

Each component receives only its own section. Every field states its type, its
allowed range or choices and (in config.toml) a comment. Unknown keys, wrong types and
out-of-range values raise ``ConfigError`` naming the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, get_type_hints

from models.errors import ConfigError

__all__ = ["ConfigError", "Config", "load_config", "read_panel_settings", "resumed_train_settings", "PANEL_KEYS", "PRESETS", "PRESET_TRAINING", "SECTIONS"]


def _f(default: Any, *, lo: float | None = None, hi: float | None = None, choices: tuple | None = None, doc: str = "",
       check: Callable[[Any], str | None] | None = None) -> Any:
    """A setting: default, allowed range or choices, and an optional ``check`` that
    returns what is wrong with a value (None when it is fine)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices, "doc": doc, "check": check})


def setting_range(section: type, key: str) -> tuple[float, float]:
    """(lo, hi) of a numeric setting, as its section declares it: for controls that
    clamp what a user asks for, so the two never disagree."""
    meta = {f.name: f.metadata for f in dataclasses.fields(section)}[key]
    return float(meta["lo"]), float(meta["hi"])


def _badge_text(text: str) -> str | None:
    """The badge font (OpenCV's Hershey) draws printable ASCII only."""
    if not text.strip():
        return "must not be empty or blank: the badge tells viewers the face is AI-generated"
    if not all(32 <= ord(c) < 127 for c in text):
        return "must be printable ASCII (letters, digits, punctuation): the badge font draws nothing else"
    if len(text) > 40:
        return "must be at most 40 characters"
    return None


@dataclass(frozen=True)
class CaptureConfig:
    source: str = _f("camera", choices=("camera", "file", "puppet"), doc="what drives the face")
    camera: str = _f("0", doc="camera index or name")
    width: int = _f(1280, lo=64, hi=7680)
    height: int = _f(720, lo=64, hi=4320)
    fps: int = _f(30, lo=1, hi=240)
    mjpg: bool = _f(True)
    file: str = _f("", doc="video file when source = 'file'")
    realtime: bool = _f(True, doc="play files at their own frame rate, not flat out")
    puppet_seed: int = _f(1, lo=0, hi=2**31 - 1)


@dataclass(frozen=True)
class LandmarksConfig:
    min_detection_confidence: float = _f(0.5, lo=0.0, hi=1.0)
    min_presence: float = _f(0.5, lo=0.0, hi=1.0)
    smoothing: bool = _f(True, doc="One Euro filter in live; always off when building a dataset")
    min_cutoff: float = _f(1.5, lo=0.01, hi=100.0, doc="One Euro: Hz; lower = steadier when still")
    beta: float = _f(0.3, lo=0.0, hi=100.0, doc="One Euro: higher = less lag when moving fast")
    d_cutoff: float = _f(1.0, lo=0.01, hi=100.0)
    crop: bool = _f(True, doc="live: Face Mesh on a face-sized crop, not the whole frame (faster on large frames)")
    crop_size: int = _f(256, lo=64, hi=1024, doc="pixels square of that crop")


@dataclass(frozen=True)
class SketchConfig:
    line_width: float = _f(2.0, lo=0.5, hi=8.0, doc="stroke width in pixels at 256 px height")
    fill_mouth: bool = _f(True)
    aspect: float = _f(1.0, lo=0.25, hi=4.0, doc="framing width / height")
    margin: float = _f(0.15, lo=0.0, hi=2.0, doc="space around the face, as a fraction of its size")
    headroom: float = _f(0.08, lo=-0.5, hi=0.5, doc="shift the crop up by this fraction of its height")


@dataclass(frozen=True)
class ModelConfig:
    size: int = _f(256, lo=32, hi=2048, doc="generation height in pixels, rounded to 2**depth")
    ngf: int = _f(64, lo=4, hi=256)
    depth: int = _f(8, lo=3, hi=10)
    dropout: float = _f(0.5, lo=0.0, hi=0.9)
    upsample: str = _f("transpose", choices=("transpose", "resize", "icnr"),
                       doc="x2 upsampling: transpose (pix2pix), resize (nearest + 3x3 conv), icnr (transposed, initialised as resize: 4/9 the cost)")


@dataclass(frozen=True)
class DatasetConfig:
    target_name: str = _f("", doc="who the target is (consent record); or pass --target-name")
    consent: bool = _f(False, doc="true = you attest you may use the target's likeness; or pass --consent")
    min_confidence: float = _f(0.98, lo=0.0, hi=1.0, doc="fraction of landmarks inside the frame")
    blur_ratio: float = _f(0.35, lo=0.0, hi=1.0, doc="drop frames less sharp than this x the clip median")
    duplicate_motion: float = _f(0.002, lo=0.0, hi=1.0, doc="mean landmark motion / IOD under which a frame is a duplicate")
    duplicate_pixels: float = _f(0.5, lo=0.0, hi=255.0, doc="... and mean pixel change under which it is one")
    val_fraction: float = _f(0.1, lo=0.0, hi=0.5)
    val_block_seconds: float = _f(2.0, lo=0.1, hi=600.0)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = _f(20000, lo=1, hi=10**8, doc="generator updates in all")
    batch_size: int = _f(4, lo=1, hi=1024, doc="per process (per GPU under torchrun)")
    lr: float = _f(2e-4, lo=1e-7, hi=1.0, doc="Adam learning rate, both networks")
    beta1: float = _f(0.5, lo=0.0, hi=0.999)
    gan_loss: str = _f("lsgan", choices=("lsgan", "hinge"))
    lambda_gan: float = _f(1.0, lo=0.0, hi=1e3)
    lambda_l1: float = _f(100.0, lo=0.0, hi=1e4)
    lambda_fm: float = _f(10.0, lo=0.0, hi=1e3, doc="discriminator feature matching")
    gan_start: float = _f(0.0, lo=0.0, hi=0.95, doc="share of a fresh run (its steps, or its --minutes) on L1 alone before the discriminator joins; those steps cost about a third")
    teacher_l1: float = _f(100.0, lo=0.0, hi=1e4, doc="with --teacher: L1 weight toward the teacher's renderings")
    mouth_weight: float = _f(4.0, lo=1.0, hi=100.0, doc="extra L1 weight on the lips")
    eye_weight: float = _f(2.0, lo=1.0, hi=100.0, doc="extra L1 weight on the eyes")
    ndf: int = _f(64, lo=4, hi=256, doc="discriminator base width")
    d_scales: int = _f(1, lo=1, hi=4, doc="PatchGAN scales (2+ = pix2pixHD multi-scale)")
    augment: bool = _f(True, doc="small aligned shifts, scales and rotations of each pair")
    warp: float = _f(0.0, lo=0.0, hi=0.015, doc="with augment, once the discriminator has joined (train.gan_start): a smooth random bend of photo and landmarks together, its displacements' std as a fraction of the image height; 0 = none")
    amp: str = _f("auto", choices=("auto", "bf16", "fp16", "off"), doc="mixed precision on GPU; auto = bf16 where supported")
    device: str = _f("auto", choices=("auto", "cpu", "cuda"))
    checkpoint_every: int = _f(500, lo=1, hi=10**8)
    preview_every: int = _f(250, lo=1, hi=10**8)
    val_every: int = _f(1000, lo=1, hi=10**8)
    val_frames: int = _f(32, lo=1, hi=100000, doc="validation frames used for metrics")
    log_every: int = _f(10, lo=1, hi=10**8, doc="TensorBoard scalars")
    seed: int = _f(0, lo=0, hi=2**31 - 1)


# The inference engines live can run (live/engines.py builds its registry from this list).
ENGINE_NAMES = ("torch-cuda", "ort-tensorrt", "ort-cuda", "ort-cpu", "torch-cpu")


@dataclass(frozen=True)
class SwapConfig:
    size: int = _f(128, choices=(64, 128, 256), doc="replacement: the aligned face crop, pixels square")
    width: int = _f(64, lo=16, hi=1024, doc="channels of the swap network's widest layer (a multiple of 16)",
                   check=lambda v: None if v % 16 == 0 else "must be a multiple of 16")
    latent: int = _f(128, lo=16, hi=2048, doc="the shared encoder's bottleneck")
    guide: bool = _f(True, doc="the decoders also see the sketch of the landmarks (the user's, moved onto the target's face shape)")
    batch_size: int = _f(2, lo=1, hi=1024, doc="faces of each person per step (2 beat 4 and 8 on 2 CPU cores: more updates in the same time)")
    lr: float = _f(5e-4, lo=1e-7, hi=1.0, doc="Adam learning rate (train.lr is the pix2pix trainer's)")
    lambda_l1: float = _f(10.0, lo=0.0, hi=1e4, doc="L1 inside the face mask (eyes and mouth weighted by train.eye_weight / mouth_weight)")
    lambda_ssim: float = _f(10.0, lo=0.0, hi=1e4, doc="structural dissimilarity (1 - SSIM) / 2 inside the face mask")
    lambda_mask: float = _f(10.0, lo=0.0, hi=1e4, doc="L1 of the predicted mask against the landmarks' face mask")
    warp: float = _f(0.025, lo=0.0, hi=0.2, doc="random warp of the network's input, as a fraction of the crop (the classic recipe)")
    attention: bool = _f(False, doc="a self-attention block on each decoder's 16x16 code")
    lambda_gan: float = _f(0.0, lo=0.0, hi=1e4, doc="adversarial loss from a PatchGAN per person (0 = off)")


@dataclass(frozen=True)
class LiveConfig:
    engine: str = _f("auto", choices=("auto",) + ENGINE_NAMES, doc="auto = the fastest engine that runs here")
    model_tier: str = _f("auto", choices=("auto", "full", "cpu"),
                         doc="auto = MODEL_DIR/cpu (the distilled CPU model) when no NVIDIA GPU is present")
    budget_ms: float = _f(33.0, lo=1.0, hi=1000.0)
    pipelined: bool = _f(False, doc="find the landmarks of frame n+1 while the generator works on frame n (no gain measured on 2 cores)")
    cpu_threads: int = _f(0, lo=0, hi=256, doc="ONNX Runtime threads on the CPU engine; 0 = one per core this process may use, at most 4")
    opencv_threads: int = _f(1, lo=0, hi=256, doc="OpenCV's worker threads in live (0 = OpenCV's default)")
    neutral_seconds: float = _f(1.0, lo=0.0, hi=30.0, doc="driver neutral from the first seconds")
    steady: float = _f(0.6, lo=0.0, hi=0.9, doc="share of the previous generated face kept while the face is still (damps the generator's flicker; not in --swap replacement); 0 = off")
    steady_motion: float = _f(0.035, lo=0.001, hi=1.0, doc="landmark motion per frame (inter-ocular distances) from which the face is drawn afresh, unblended")
    gain_mouth: float = _f(1.0, lo=0.0, hi=3.0)
    gain_eyes: float = _f(1.0, lo=0.0, hi=3.0)
    gain_brows: float = _f(1.0, lo=0.0, hi=3.0)
    gain_rest: float = _f(1.0, lo=0.0, hi=3.0)
    head_motion: float = _f(1.0, lo=0.0, hi=2.0, doc="how much of the driver's head motion to apply")


@dataclass(frozen=True)
class OutputConfig:
    width: int = _f(1280, lo=64, hi=7680)
    badge: bool = _f(True, doc="the visible AI-generated label; turning it off is logged")
    badge_text: str = _f("AI-generated", check=_badge_text)
    badge_position: str = _f("bottom-right", choices=("top-left", "top-right", "bottom-left", "bottom-right"))
    badge_size: float = _f(0.04, lo=0.015, hi=0.2, doc="text height as a fraction of the frame height")
    badge_opacity: float = _f(0.85, lo=0.3, hi=1.0, doc="the badge cannot be made fainter than 0.3")
    watermark: bool = _f(True, doc="invisible watermark with the model's ID in every frame; `reenact verify` reads it")

    height: int = _f(720, lo=64, hi=4320)
    virtual_camera: bool = _f(True)
    device: str = _f("", doc="virtual camera device, e.g. /dev/video10; empty = first found")
    backend: str = _f("", doc="pyvirtualcam backend; empty = its default")
    window: bool = _f(False)
    record: str = _f("", doc="mp4 path to record to; empty = off")


@dataclass(frozen=True)
class AudioConfig:
    enabled: bool = _f(False)
    input: str = _f("", doc="microphone name or index; empty = default")
    output: str = _f("", doc="virtual microphone name or index")
    samplerate: int = _f(48000, lo=8000, hi=192000)
    blocksize: int = _f(256, lo=16, hi=8192)
    offset_ms: float = _f(0.0, lo=-500.0, hi=500.0)
    max_delay_ms: float = _f(500.0, lo=0.0, hi=5000.0)


def _loopback_note(host: str) -> str | None:
    return None if host.strip() else "must not be empty (127.0.0.1 keeps the panel on this machine)"


@dataclass(frozen=True)
class PanelConfig:
    host: str = _f("127.0.0.1", doc="address the panel listens on; any other than 127.0.0.1/localhost requires the printed token",
                   check=_loopback_note)
    port: int = _f(8765, lo=1, hi=65535)
    preview_width: int = _f(640, lo=64, hi=3840, doc="the panel's preview of the output, pixels")
    preview_height: int = _f(360, lo=64, hi=2160)
    preview_fps: float = _f(15.0, lo=0.5, hi=60.0, doc="at most this many preview frames a second (the loop never waits for them)")
    models_dir: str = _f("models", doc="the folder whose model directories the panel offers")
    recordings_dir: str = _f("recordings", doc="where the panel's recordings go")
    settings_file: str = _f("panel-settings.toml", doc="what the panel changes, kept across restarts; beside config.toml, overrides it")


# What the panel may change and keep (its settings file): nothing else is read from that file.
PANEL_KEYS = ("live.gain_mouth", "live.gain_eyes", "live.gain_brows", "live.head_motion", "live.steady", "audio.offset_ms",
              "output.badge_position", "capture.camera", "audio.input")


SECTIONS: dict[str, type] = {
    "capture": CaptureConfig,
    "landmarks": LandmarksConfig,
    "sketch": SketchConfig,
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "train": TrainConfig,
    "swap": SwapConfig,
    "live": LiveConfig,
    "output": OutputConfig,
    "audio": AudioConfig,
    "panel": PanelConfig,
}


# Named generator architectures (``--preset``), applied over the config file's [model]
# and under --set. "cpu" was chosen by measurement on a 2-core CPU: docs/BENCHMARKS.md,
# "CPU tier: candidate study".
PRESETS: dict[str, dict[str, Any]] = {
    "full": {"size": 256, "ngf": 64, "depth": 8, "upsample": "transpose"},  # the GPU-sized default
    "cpu": {"size": 256, "ngf": 16, "depth": 8, "upsample": "resize"},  # 2.45 M parameters, ~11 ms on 2 CPU cores
    # A CPU model's lighter rung (MODEL/light): half the width, transposed up-convolutions that start as resize-convolutions.
    "light": {"size": 256, "ngf": 8, "depth": 8, "upsample": "icnr"},
}
# What a preset changes in [train]: a small generator trains against a discriminator sized
# for it (ndf 64 makes a CPU step ~2.5x slower and did not measure better at 1500 steps),
# and the cpu preset spends the first three quarters of its run on L1 alone, at a third of
# a step's cost (20-minute runs: 27.33 dB at 0.75, 26.84 at 0.5, 26.63 with the
# discriminator throughout; docs/BENCHMARKS.md, "L1 alone for the first half"); once the
# discriminator joins, it bends its pairs (d10's yaw r +0.04 over four runs, PSNR unchanged:
# "Head turns the generator follows").
PRESET_TRAINING: dict[str, dict[str, Any]] = {"cpu": {"ndf": 32, "gan_start": 0.75, "warp": 0.01}, "light": {"ndf": 32}}


@dataclass(frozen=True)
class Config:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    landmarks: LandmarksConfig = field(default_factory=LandmarksConfig)
    sketch: SketchConfig = field(default_factory=SketchConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    swap: SwapConfig = field(default_factory=SwapConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    panel: PanelConfig = field(default_factory=PanelConfig)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _check(key: str, value: Any, typ: type, meta: dict) -> Any:
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{key} = {value!r}: must be {_TYPE_NAMES[typ]}, got {type(value).__name__}")
    if typ is float and not math.isfinite(value):  # NaN passes every range comparison
        raise ConfigError(f"{key} = {value!r}: must be a finite number")
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key} = {value!r}: must be one of {', '.join(map(repr, choices))}")
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"{key} = {value!r}: must be between {lo} and {hi}")
    problem = meta["check"](value) if meta.get("check") else None
    if problem:
        raise ConfigError(f"{key} = {value!r}: {problem}")
    return value


def _section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table, got {raw!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"unknown key {name}.{key}; [{name}] has: {', '.join(fields)}")
        kwargs[key] = _check(f"{name}.{key}", value, hints[key], dict(fields[key].metadata))
    return cls(**kwargs)


def _parse_override(item: str) -> tuple[str, str, Any]:
    """``section.key=value`` with a TOML value; a bare word is taken as a string."""
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. live.budget_ms=40")
    lhs, rhs = item.split("=", 1)
    section, key = lhs.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {rhs.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs.strip()
    return section, key, value


def _read_toml(p: Path, what: str) -> dict[str, Any]:
    if p.is_dir():
        raise ConfigError(f"{what} {str(p)!r} is a directory, not a settings file")
    if not p.is_file():
        raise ConfigError(f"{what} {str(p)!r} does not exist")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {str(p)!r} is not UTF-8 text (byte {e.start}): save it as UTF-8 TOML") from None
    except OSError as e:
        raise ConfigError(f"{what} {str(p)!r} cannot be read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None


def read_panel_settings(path: str | Path) -> dict[str, Any]:
    """The panel's settings file as {"section.key": value} (empty when there is none).
    Only ``PANEL_KEYS`` may appear; anything else is an error naming the key."""
    p = Path(path)
    if not p.exists():
        return {}
    raw = _read_toml(p, "panel settings file")
    flat = {}
    for section, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{p}: [{section}] must be a table")
        for key, value in table.items():
            name = f"{section}.{key}"
            if name not in PANEL_KEYS:
                raise ConfigError(f"{p}: {name} is not a setting the panel keeps ({', '.join(PANEL_KEYS)}); delete it")
            flat[name] = value
    return flat


def load_config(path: str | Path | None = None, overrides: list[str] = (), *, preset: str | None = None,
                panel_settings: dict[str, Any] | None = None) -> Config:
    """Read ``path`` (or use the defaults when None), apply a model ``preset`` (a name in
    ``PRESETS``), then what the panel kept (``panel_settings``, from
    ``read_panel_settings``), then the ``--set`` overrides, and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_toml(Path(path), "config file")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets are: {', '.join(PRESETS)}")
        if not isinstance(raw.setdefault("model", {}), dict):
            raise ConfigError("[model] must be a table")
        raw["model"].update(PRESETS[preset])
        if not isinstance(raw.setdefault("train", {}), dict):
            raise ConfigError("[train] must be a table")
        raw["train"].update(PRESET_TRAINING.get(preset, {}))
    for name, value in (panel_settings or {}).items():
        section, key = name.split(".", 1)
        if not isinstance(raw.setdefault(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table")
        raw[section][key] = value
    for item in overrides:
        section, key, value = _parse_override(item)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"[{section}] must be a table")
        raw[section][key] = value
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown section [{sorted(unknown)[0]}]; sections are: {', '.join(SECTIONS)}")
    return Config(**{name: _section(name, cls, raw.get(name, {})) for name, cls in SECTIONS.items()})


def resumed_train_settings(recorded: Any, overrides: list[str] = ()) -> TrainConfig:
    """The [train] settings of a resumed run: those its checkpoint recorded (``recorded``,
    a dict), then this command's ``--set train.*`` over them. A run goes on with the
    discriminator width, losses and schedule it started with, whatever the preset or the
    config file say now (a `cpu` run resumed without ``--preset cpu`` kept its ndf 32).
    Keys this version no longer has are dropped; keys it added take their defaults."""
    if not isinstance(recorded, dict):
        raise ConfigError(f"the recorded [train] settings must be a table, got {type(recorded).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    raw = {k: v for k, v in recorded.items() if k in known}
    for item in overrides:
        section, key, value = _parse_override(item)
        if section == "train":
            raw[key] = value
    return _section("train", TrainConfig, raw)
