"""The model directory: everything live needs, self-describing and verified on load.

    MODEL_DIR/
      model.json          contract (framing, sketch spec + hash, target neutral),
                          generator config, provenance, metrics, how the generator
                          draws gaze (measured at export), and the sha256 of every
                          file below
      generator.pt        generator weights (PyTorch state_dict, fp32)
      generator_fp16.pt   instead of generator.pt in a model packed for CPU cores
                          (the built-in character): the same weights in fp16
      generator_fp16.onnx generator for GPU engines      (written by `reenact export`)
      generator_fp32.onnx generator for the CPU engine   (written by `reenact export`)
      plate.png           the target's scene without the head, for composition
      model_card.md       the same facts for people
      checkpoint.pt       full training state (only needed to resume training)

``model.json`` is always written last (atomically), so a directory whose
``model.json`` verifies is complete.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.files import atomic_write_text, confined, read_record, sha256_file
from models.framing import Framing
from models.retarget import Coverage, GazeResponse
from models.sketch import SketchSpec
from models.swap import SwapArchitecture, SwapGuide, SwapTemplate
from models.errors import ModelError

FORMAT = "reenact-model"
VERSION = 1
CPU_TIER = "cpu"  # MODEL_DIR/cpu: the model's CPU tier, which live loads on machines without an NVIDIA GPU
LIGHT_RUNG = "light"  # .../light: a smaller generator with the same contract, live's first step down when over budget


class ArtifactError(ModelError):
    """A model directory is missing, damaged or does not match; the message names the problem."""


@dataclass(frozen=True)
class Contract:
    """What the generator's input means: live must reproduce it exactly. ``coverage``
    (what the target's clip shows: gaze and head-pose ranges) tells live what the
    generator can draw; models made before it have None."""

    framing: Framing
    sketch: SketchSpec
    neutral_px: np.ndarray  # (478, 3) float32, target source-video pixels
    coverage: Coverage | None = None

    def to_dict(self) -> dict:
        d = {"framing": self.framing.to_dict(), "sketch_spec": self.sketch.to_dict(), "sketch_hash": self.sketch.hash,
             "neutral_px": np.round(np.asarray(self.neutral_px, dtype=np.float64), 3).tolist()}
        if self.coverage is not None:
            d["coverage"] = self.coverage.to_dict()
        return d

    @staticmethod
    def from_dict(d: dict) -> "Contract":
        """Rebuild a contract from an untrusted record; ArtifactError names what is wrong."""
        if not isinstance(d, dict):
            raise ArtifactError(f"the contract record is a {type(d).__name__}, not an object")
        try:
            spec = SketchSpec.from_dict(d["sketch_spec"])
        except KeyError as e:
            raise ArtifactError(f"contract lacks {e}") from None
        except (ValueError, TypeError, AttributeError) as e:
            raise ArtifactError(f"sketch spec: {e}; re-export the model with this version of reenact") from None
        if spec.hash != d.get("sketch_hash"):
            raise ArtifactError(f"sketch hash mismatch: recorded {d.get('sketch_hash')!r}, this renderer gives {spec.hash!r} for the same spec")
        try:
            framing = Framing.from_dict(d["framing"])
        except KeyError as e:
            raise ArtifactError(f"contract lacks {e}") from None
        except ValueError as e:
            raise ArtifactError(str(e)) from None
        try:
            neutral = np.asarray(d.get("neutral_px"), dtype=np.float32)
        except (TypeError, ValueError):
            neutral = np.zeros(0, np.float32)
        if neutral.shape != (478, 3) or not np.isfinite(neutral).all():
            raise ArtifactError(f"target neutral must be 478x3 finite points, got shape {neutral.shape}")
        if (spec.width, spec.height) != tuple(framing.out_size):
            raise ArtifactError(f"sketch size {spec.width}x{spec.height} differs from the framing's {framing.out_size}")
        try:
            coverage = Coverage.from_dict(d.get("coverage"))
        except ValueError as e:
            raise ArtifactError(str(e)) from None
        return Contract(framing, spec, neutral, coverage)

    def require_same(self, other: "Contract", what: str = "model") -> None:
        """Raise ArtifactError naming each part of the contract that differs."""
        problems = []
        if self.sketch.hash != other.sketch.hash:
            problems.append(f"sketch spec {other.sketch.hash} != {self.sketch.hash}")
        if self.framing != other.framing:
            problems.append(f"framing crop {other.framing.crop} / {other.framing.out_size} != {self.framing.crop} / {self.framing.out_size}")
        if not np.allclose(self.neutral_px, other.neutral_px, atol=1e-2):
            problems.append("target neutral face differs")
        if problems:
            raise ArtifactError(f"the {what} has another input contract: " + "; ".join(problems))


def write_model_json(model_dir: Path, meta: dict, files: list[str]) -> dict:
    """Write model.json with the sha256 of ``files`` (names inside model_dir)."""
    meta = dict(meta, format=FORMAT, version=VERSION)
    meta["files"] = {name: {"sha256": sha256_file(model_dir / name), "bytes": (model_dir / name).stat().st_size} for name in files}
    atomic_write_text(model_dir / "model.json", json.dumps(meta, indent=1))
    return meta


class _ListedFiles:
    """A model directory's files, each only if model.json lists it (``path``, ``meta``)."""

    def file(self, name: str) -> Path:
        if name not in self.meta["files"]:
            raise ArtifactError(f"{self.path} has no {name}" + (" (run `reenact export` first)" if name.endswith(".onnx") else ""))
        return self.path / name


@dataclass(frozen=True)
class ModelDir(_ListedFiles):
    path: Path
    meta: dict
    contract: Contract

    @property
    def generator_config(self) -> dict:
        return self.meta["generator"]

    kind = "reenact"
    output_channels = 3  # the generator's output: the photo

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, 3): the sketch the generator takes."""
        return (self.contract.sketch.height, self.contract.sketch.width, 3)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(H, W, 3): the photo, the sketch's size."""
        return self.input_shape

    def check_onnx(self, path: Path) -> dict[str, str]:
        """The ONNX file's metadata; ArtifactError unless it was exported for this model's sketch."""
        return check_onnx_metadata(path, self)

    @property
    def model_id(self) -> str:
        """8 hex digits naming these weights (in logs, model cards and the watermark):
        from generator.pt's sha256, or, in a directory packed for CPU cores without it
        (the built-in character), the ID recorded when it was packed."""
        if "generator.pt" in self.meta["files"]:
            return model_id_of(self.meta["files"]["generator.pt"]["sha256"])
        return self.meta["model_id"]


def model_id_of(generator_sha256: str) -> str:
    """A model's ID: the first 8 hex digits of its generator.pt's sha256."""
    return generator_sha256[:8]


def _is_model_id(value) -> bool:
    return isinstance(value, str) and len(value) == 8 and all(c in "0123456789abcdef" for c in value)


def builtin_character() -> Path:
    """The directory of the built-in character, the model that ships inside the package
    (a made-up face; see models/data/character/model_card.md). Live drives it when no
    ``--model`` is given."""
    return Path(__file__).resolve().parent / "data" / "character"


def check_model_path(path: str | Path) -> Path:
    """``path`` as a model directory that exists, or ArtifactError saying what it is instead."""
    p = Path(path)
    if p.is_file():
        raise ArtifactError(f"model directory {str(p)!r} is a file, not a directory: give the folder that holds model.json")
    if not p.is_dir():
        raise ArtifactError(f"model directory {str(p)!r} does not exist")
    return p


def read_model_json(p: Path) -> dict:
    """model.json of a model directory, checked to be a reenact model record."""
    mj = p / "model.json"
    if not mj.is_file():
        raise ArtifactError(f"{str(p)!r} is not a reenact model (no model.json): train one with `reenact train DATASET --out {p}`")
    return read_record(mj, error=ArtifactError, kind=FORMAT, version=VERSION,
                       keys={"files": dict, "contract": dict, "generator": dict})


KINDS = ("reenact", "swap")  # model.json's "kind": a re-enactment (pix2pix) model, or a replacement (face swap) one


def model_kind(meta: dict) -> str:
    """The kind a model record declares (models made before replacement have none: re-enactment)."""
    kind = meta.get("kind", "reenact")
    if kind not in KINDS:
        raise ArtifactError(f"model.json declares an unknown kind {kind!r} (this version knows {', '.join(KINDS)}); update reenact")
    return kind


def load_model_dir(path: str | Path, *, verify: bool = True, rebuild: tuple[str, ...] = ()) -> ModelDir:
    """Open and verify a re-enactment model directory. ``verify`` checks every file's
    sha256; ``rebuild`` names files the caller is about to write again (``export`` and its
    ONNX files), which are then not checked, so a damaged one can be repaired."""
    p = check_model_path(path)
    meta = read_model_json(p)
    if model_kind(meta) == "swap":
        raise ArtifactError(f"{p} is a replacement (face swap) model, made by `train --swap`; live, render, eval and bench "
                            "run re-enactment models only so far")
    contract = Contract.from_dict(meta["contract"])
    try:
        GazeResponse.from_dict(meta.get("gaze_response"))  # live builds it again; a bad record fails here, named
    except ValueError as e:
        raise ArtifactError(f"{p / 'model.json'}: {e}") from None
    _check_files(p, meta, verify=verify, rebuild=rebuild)
    return ModelDir(p, meta, contract)


def open_model(path: str | Path, *, verify: bool = True) -> "ModelDir | SwapModelDir":
    """Either kind of model directory, by the kind its model.json declares."""
    p = check_model_path(path)
    return load_swap_model(p, verify=verify) if model_kind(read_model_json(p)) == "swap" else load_model_dir(p, verify=verify)


@dataclass(frozen=True)
class SwapModelDir(_ListedFiles):
    """A replacement model: its network's size, the alignment it was trained with and,
    for a guided network, how its sketch is drawn (``guide``)."""

    path: Path
    meta: dict
    template: SwapTemplate
    network: SwapArchitecture
    guide: SwapGuide | None = None


    @property
    def model_id(self) -> str:
        return model_id_of(self.meta["files"]["generator.pt"]["sha256"])

    kind = "swap"
    output_channels = 4  # the target's face (3) and its mask (1, scaled to [-1, 1] like the face)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(S, S, 3): the user's aligned face; (S, 2S, 3) guided: the face, then its sketch."""
        return self.network.input_shape

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(S, S, 4): the target's face and its mask."""
        return (self.network.size, self.network.size, self.output_channels)

    def check_onnx(self, path: Path) -> dict[str, str]:
        """The ONNX file's metadata; ArtifactError unless it was exported for this model's alignment."""
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if props.get("reenact.kind") != "swap" or props.get("reenact.template_hash") != self.template.hash:
            raise ArtifactError(f"{path} was not exported for this swap model's alignment template {self.template.hash}; "
                                f"run `reenact export {self.path}`")
        return props


def load_swap_model(path: str | Path, *, verify: bool = True, rebuild: tuple[str, ...] = ()) -> SwapModelDir:
    """Open and verify a replacement model directory (``kind`` "swap"); its alignment
    template and network size are checked as untrusted records."""
    p = check_model_path(path)
    meta = read_model_json(p)
    if model_kind(meta) != "swap":
        raise ArtifactError(f"{p} is a re-enactment model, not a replacement (face swap) one")
    try:
        template = SwapTemplate.from_dict(meta["contract"].get("template"))
        network = SwapArchitecture.from_dict(meta["generator"])
        guide = SwapGuide.from_dict(meta["contract"].get("guide"), network.size) if network.guide else None
    except ValueError as e:
        raise ArtifactError(f"{p / 'model.json'}: {e}") from None
    if meta["contract"].get("template_hash") != template.hash:
        raise ArtifactError(f"{p / 'model.json'}: the alignment template's hash does not match the template it records")
    if template.size != network.size:
        raise ArtifactError(f"{p / 'model.json'}: the template is {template.size} px, the network {network.size} px")
    if "generator.pt" not in meta["files"]:
        raise ArtifactError(f"{p / 'model.json'} lists no generator.pt")
    _check_files(p, meta, verify=verify, rebuild=rebuild)
    return SwapModelDir(p, meta, template, network, guide)


def _check_files(p: Path, meta: dict, *, verify: bool, rebuild: tuple[str, ...]) -> None:
    """Every file model.json lists: inside the directory, present, of its size, and (``verify``) of its sha256."""
    if "generator.pt" not in meta["files"] and not _is_model_id(meta.get("model_id")):
        raise ArtifactError(f"{p / 'model.json'} lists no generator.pt and records no model ID (8 hex digits)")
    for name, rec in meta["files"].items():
        try:
            f = confined(p, name)
        except ValueError as e:
            raise ArtifactError(f"{p / 'model.json'} lists a file outside the model directory: {e}") from None
        if name in rebuild:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("bytes"), int) or not isinstance(rec.get("sha256"), str):
            raise ArtifactError(f"{p / 'model.json'} is corrupt: the record of {name} lacks its size or sha256")
        if not f.is_file():
            raise ArtifactError(f"{f} is missing")
        if f.stat().st_size != rec["bytes"]:
            raise ArtifactError(f"{f} is truncated or changed: {f.stat().st_size} bytes, expected {rec['bytes']}")
        if verify and sha256_file(f) != rec["sha256"]:
            raise ArtifactError(f"{f} is corrupt: its sha256 does not match model.json")


def load_generator(model: ModelDir, device="cpu"):
    """The generator of a model directory, in eval mode, fp32. The weights are loaded
    with ``weights_only=True``: a model directory is untrusted, and unpickling
    anything but tensors and plain types could run code from it."""
    import torch

    from models.unet import UNetGenerator, from_architecture

    if isinstance(model, SwapModelDir):
        return _load_swap_generator(model, device)
    # A model packed for CPU cores may keep its weights in half precision only (the
    # built-in character): they load into the same fp32 network.
    path = model.file("generator.pt" if "generator.pt" in model.meta["files"] or "generator_fp16.pt" not in model.meta["files"]
                      else "generator_fp16.pt")
    try:
        g = UNetGenerator(from_architecture(model.generator_config))
    except ValueError as e:
        raise ArtifactError(f"{model.path / 'model.json'}: its generator settings are invalid ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        g.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - unpickling refused, wrong keys or shapes: all mean a bad file
        raise ArtifactError(f"{path} is not a usable generator for this model ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200]})") from None
    return g.eval().to(device)


def _load_swap_generator(model: "SwapModelDir", device):
    """A replacement model's run-time network (encoder + the target's decoder), eval, fp32."""
    import torch

    from models.swapnet import SwapAutoencoder, SwapGenerator

    path = model.file("generator.pt")
    g = SwapGenerator(SwapAutoencoder(model.network))
    try:
        g.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - unpickling refused, wrong keys or shapes: all mean a bad file
        raise ArtifactError(f"{path} is not a usable network for this model ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return g.eval().to(device)


def check_onnx_metadata(path: Path, model: ModelDir) -> dict[str, str]:
    """An ONNX file's metadata; ArtifactError if its recorded sketch hash is not the model's."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if props.get("reenact.sketch_hash") != model.contract.sketch.hash:
        raise ArtifactError(f"{path} was exported for sketch {props.get('reenact.sketch_hash')!r}, the model's is {model.contract.sketch.hash!r}")
    return props


# What ``reenact export`` stamps on a re-enactment generator's ONNX since its graph is
# ``models.unet.for_inference``'s (transposed up-blocks, BatchNorm folded in).
INFERENCE_FORM = "folded-up-blocks"


def export_advice(model: ModelDir, props: dict[str, str]) -> str | None:
    """A line for the log when an ONNX file (``props``: its metadata) was exported by an
    earlier reenact in a slower form than ``reenact export`` now writes; else None."""
    if isinstance(model, SwapModelDir) or props.get("reenact.inference_form") == INFERENCE_FORM:
        return None
    if model.generator_config.get("upsample") != "resize":
        return None  # a transposed generator gains only its folded BatchNorms: not worth a line
    return (f"{model.path} was exported by an earlier reenact: `reenact export {model.path}` writes the same generator "
            "in a form that takes about half the CPU time")
