"""``reenact export MODEL_DIR``: ONNX generators for the live engines.

Writes ``generator_fp16.onnx`` (the GPU artifact) and ``generator_fp32.onnx`` (the CPU
artifact: on CPUs fp32 is faster than fp16, which gets casts inserted). Both carry
the sketch spec, its hash and the framing in their metadata. The graph is the
generator's ``for_inference`` form (up-blocks as transposed convolutions with their
BatchNorm folded in: the same function, about half the CPU time of a "resize" network).
Each is checked against the PyTorch generator as trained, on sketches drawn from the
target's own contract; a model that fails its tolerance is not written, and the export
fails with the measured errors.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from models.artifact import (INFERENCE_FORM, ModelDir, check_model_path, load_generator, load_model_dir, load_swap_model, model_kind, read_model_json,
                             write_model_json)
from models.files import atomic_path
from models.pixels import images_to_tensor, tensor_to_images
from models.retarget import EYES, SKETCH_MARGIN, GazeResponse, iris_position, place_iris
from models.sketch import render_sketch
from models.unet import for_inference
from models.errors import ModelError

# Max / mean absolute error on the [-1, 1] output scale, measured with ONNX Runtime's CPU
# provider against fp32 PyTorch. fp16 loses ~3 decimal digits through ~16 layers.
TOLERANCE = {"fp32": (1e-3, 1e-4), "fp16": (0.1, 0.01)}
OPSET = 17


class ExportError(ModelError):
    """The export failed its parity check or could not be written."""


def parity_inputs(model: ModelDir, n: int = 4, seed: int = 0) -> np.ndarray:
    """(n, 3, H, W) float32 sketches in [-1, 1]: the target's neutral face and jittered
    variants of it, drawn through the model's own framing and spec."""
    c = model.contract
    rng = np.random.default_rng(seed)
    base = c.framing.apply(c.neutral_px)
    out = []
    for i in range(n):
        pts = base + (rng.normal(0, 0.01 * c.sketch.height, base.shape) if i else 0)
        out.append(render_sketch(pts.astype(np.float32), c.sketch))
    return images_to_tensor(np.stack(out)).numpy()


def _onnx_export(g: torch.nn.Module, example: torch.Tensor, path: Path, names: tuple[str, str] = ("sketch", "photo"), *,
                 fold_constants: bool = True) -> None:
    """The TorchScript-based exporter: a plain conv net traces exactly, and it needs
    no onnxscript. Its deprecation notice is not the user's concern. ``fold_constants=False``
    keeps weights that ``forward`` derives (``NearestUpConv``) in their small form: ONNX
    Runtime folds them when it loads the file."""
    import warnings

    kwargs = dict(input_names=[names[0]], output_names=[names[1]], opset_version=OPSET, do_constant_folding=fold_constants)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            torch.onnx.export(g, (example,), str(path), dynamo=False, **kwargs)
        except TypeError:  # torch versions before the dynamo switch
            torch.onnx.export(g, (example,), str(path), **kwargs)


def _add_metadata(path: Path, model: ModelDir, precision: str) -> None:
    import onnx

    m = onnx.load(str(path))
    c = model.contract.to_dict()
    meta = {"reenact.precision": precision, "reenact.sketch_hash": c["sketch_hash"],
            "reenact.sketch_spec": json.dumps(c["sketch_spec"]), "reenact.framing": json.dumps(c["framing"]),
            "reenact.generator": json.dumps(model.generator_config), "reenact.inference_form": INFERENCE_FORM}
    del m.metadata_props[:]
    for k, v in meta.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    first = sess.get_inputs()[0]
    dtype = np.float16 if first.type == "tensor(float16)" else np.float32
    return np.concatenate([sess.run(None, {first.name: x[i : i + 1].astype(dtype)})[0].astype(np.float32) for i in range(len(x))])


ONNX_FILES = ("generator_fp32.onnx", "generator_fp16.onnx")


def export(model_dir: str | Path, *, log: Callable[[str], None] = print) -> dict:
    """Write both ONNX generators of a model directory from its ``generator.pt``
    (a replacement model's: ``export_swap``).

    The ONNX files are rebuilt, never read, so a damaged or deleted one is repaired. The
    directory stays consistent throughout: model.json first drops the old exports, and
    lists each new one only after it was written whole and passed its parity check."""
    if model_kind(read_model_json(check_model_path(model_dir))) == "swap":
        return export_swap(model_dir, log=log)
    model = load_model_dir(model_dir, rebuild=ONNX_FILES)
    g = load_generator(model)
    x = parity_inputs(model)
    with torch.no_grad():
        ref = g(torch.from_numpy(x)).numpy()
    meta, kept = _unlist_exports(model)
    report = {}
    for precision in ("fp32", "fp16"):
        report[precision] = _export_one(g, model, x, ref, precision, log)
    meta["export"] = {"opset": OPSET, "parity": report, "torch": torch.__version__}
    meta.pop("gaze_response", None)
    response = measure_gaze_response(g, model, log=log)
    if response is not None:
        meta["gaze_response"] = response.to_dict()
    write_model_json(model.path, meta, kept + list(ONNX_FILES))
    return report


def _unlist_exports(model) -> tuple[dict, list[str]]:
    """(model.json's record without its file list, the files that stay): the old ONNX
    files are unlisted first, so an export that fails midway never looks complete."""
    meta = {k: v for k, v in model.meta.items() if k not in ("files", "format", "version")}
    kept = sorted(set(model.meta["files"]) - set(ONNX_FILES))
    if kept != sorted(model.meta["files"]):
        write_model_json(model.path, meta, kept)
    return meta, kept


def _export_one(g: torch.nn.Module, model: ModelDir, x: np.ndarray, ref: np.ndarray, precision: str, log) -> dict:
    """Export, check and (only if it passes) move one ONNX file into place."""
    name = f"generator_{precision}.onnx"
    # The same function with fewer operations; parity below checks it against g itself. fp32
    # keeps the 3x3 kernels (ONNX Runtime folds them at load); ONNX Runtime's CPU cannot
    # fold an fp16 MatMul, so the fp16 file stores the 4x4 weights themselves.
    net = for_inference(g, stored_4x4=precision == "fp16")
    if precision == "fp16":
        net = net.half()
    example = torch.from_numpy(x[:1]).to(torch.float16 if precision == "fp16" else torch.float32)
    return _export_checked(model.path / name, net, example, x, ref, precision, lambda tmp: _add_metadata(tmp, model, precision),
                           fold_constants=False, log=log)


def _export_checked(path: Path, net: torch.nn.Module, example: torch.Tensor, x: np.ndarray, ref: np.ndarray, precision: str,
                    metadata: Callable[[Path], None], *, names: tuple[str, str] = ("sketch", "photo"), fold_constants: bool = True,
                    log) -> dict:
    """Export ``net`` to ``path`` (atomically), stamp its ``metadata``, and keep it only if
    ONNX Runtime on inputs ``x`` matches ``ref`` (PyTorch fp32) within ``TOLERANCE``."""
    tol_max, tol_mean = TOLERANCE[precision]
    with atomic_path(path) as tmp:
        try:
            _onnx_export(net, example, tmp, names, fold_constants=fold_constants)
            metadata(tmp)
            got = _ort_run(tmp, x)
        except Exception as e:
            raise ExportError(f"{precision} export failed: {type(e).__name__}: {e}") from e
        err = np.abs(got - ref)
        max_err, mean_err = float(err.max()), float(err.mean())
        log(f"{path.name}: parity vs PyTorch fp32: max |err| {max_err:.2e}, mean {mean_err:.2e} (tolerance {tol_max:g} / {tol_mean:g})")
        if not (max_err <= tol_max and mean_err <= tol_mean):
            raise ExportError(f"{path.name} fails parity: max |err| {max_err:.3g} (allowed {tol_max}), mean {mean_err:.3g} (allowed {tol_mean}); not written")
        size = tmp.stat().st_size
    return {"max_abs_err": max_err, "mean_abs_err": mean_err, "tolerance_max": tol_max, "tolerance_mean": tol_mean, "bytes": size}


# ---------------------------------------------------------------- a replacement model

def export_swap(model_dir: str | Path, *, log: Callable[[str], None] = print) -> dict:
    """Both ONNX files of a replacement model: its run-time network (the shared encoder
    and the target's decoder: aligned face (and, guided, its sketch) in, the target's
    face and mask out, (N, 4, S, S)), each written only once it matches PyTorch fp32 on four random faces."""
    model = load_swap_model(model_dir, rebuild=ONNX_FILES)
    g = load_generator(model)
    rng = np.random.default_rng(0)
    h, w, _ = model.input_shape
    x = torch.from_numpy(rng.uniform(-1, 1, (4, 3, h, w)).astype(np.float32))
    with torch.no_grad():
        ref = g(x).numpy()
    meta, kept = _unlist_exports(model)
    report = {}
    for precision in ("fp32", "fp16"):
        net = g if precision == "fp32" else _half_copy(g, model.network)
        example = x[:1].to(torch.float16 if precision == "fp16" else torch.float32)
        report[precision] = _export_checked(model.path / f"generator_{precision}.onnx", net, example, x.numpy(), ref, precision,
                                            lambda tmp: _add_swap_metadata(tmp, model, precision), names=("face", "swapped"), log=log)
    meta["export"] = {"opset": OPSET, "parity": report, "torch": torch.__version__}
    write_model_json(model.path, meta, kept + list(ONNX_FILES))
    return report


def _add_swap_metadata(path: Path, model, precision: str) -> None:
    import onnx

    m = onnx.load(str(path))
    del m.metadata_props[:]
    for k, v in {"reenact.kind": "swap", "reenact.precision": precision, "reenact.template_hash": model.template.hash,
                 "reenact.generator": json.dumps(model.network.to_dict())}.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))


def _half_copy(g: torch.nn.Module, network) -> torch.nn.Module:
    from models.swapnet import SwapAutoencoder, SwapGenerator

    half = SwapGenerator(SwapAutoencoder(network)).eval()
    half.load_state_dict(g.state_dict())
    return half.half()


# ---------------------------------------------------------------- how the generator draws gaze

def gaze_sweep(contract, steps: int = 7) -> list[tuple[dict, np.ndarray]]:
    """(asked, points) pairs: the target's neutral (source pixels, (478, 3)) with its
    irises moved across the horizontal range either eye covers, each gaze at three
    vergences so the two eyes' positions vary independently. ``asked``: eye ->
    horizontal position.

    Either eye's range, not the part both share: live asks each eye for positions
    across its own range and past it (``SKETCH_MARGIN``), and a generator follows a
    small iris move less than a large one. Fitted on the shared part alone (0.09 eye
    widths on d6), the gain came out 0.41-0.55 for an eye that follows live's sketches
    at 0.79, or the fit failed outright. No eye is asked for more than live would ask
    of it: its own range, ``SKETCH_MARGIN`` past either end."""
    neutral = contract.neutral_px.astype(np.float64)
    cover = contract.coverage.gaze if contract.coverage is not None else {eye: ((-0.1, 0.1), (0.0, 0.0)) for eye in EYES}
    lo, hi = min(cover[eye][0][0] for eye in EYES), max(cover[eye][0][1] for eye in EYES)
    reach = {eye: (cover[eye][0][0] - SKETCH_MARGIN, cover[eye][0][1] + SKETCH_MARGIN) for eye in EYES}
    rings = {eye: neutral[EYES[eye][1]] - neutral[EYES[eye][0]] for eye in EYES}
    out = []
    for gaze in np.linspace(lo, hi, steps):
        for vergence in (-0.06, 0.0, 0.06):
            # right eye: + is toward the nose; left eye: + is away from it
            asked = {eye: float(np.clip(gaze + side * vergence / 2, *reach[eye])) for eye, side in (("right", 1), ("left", -1))}
            pts = neutral.copy()
            for eye in EYES:
                place_iris(pts, eye, np.array([asked[eye], iris_position(neutral, eye)[1]]), rings[eye])
            out.append((asked, pts))
    return out


def fit_gaze_response(asked: dict, drawn: dict) -> tuple[GazeResponse | None, str]:
    """Fit drawn = gain * asked + offset per eye (eye -> positions). Returns the response
    and a line for the log; None where the generator does not follow its sketch cleanly
    (fewer than 10 samples, r below 0.9, or a gain or offset out of range)."""
    fit = {}
    for eye in EYES:
        x, y = np.asarray(asked[eye], np.float64), np.asarray(drawn[eye], np.float64)
        if len(x) < 10 or np.std(x) < 1e-6:
            return None, f"gaze response: only {len(x)} generated faces were found; live takes the sketch's irises as drawn"
        gain, offset = np.polyfit(x, y, 1)
        r = float(np.corrcoef(x, y)[0, 1]) if np.std(y) > 1e-9 else 0.0
        if not (r >= 0.9 and 0.3 <= gain <= 3.0 and abs(offset) <= 0.3):
            return None, (f"gaze response: the {eye} eye does not follow its sketch cleanly (r {r:.2f}, gain {gain:.2f}); "
                          "live takes the sketch's irises as drawn")
        fit[eye] = (float(gain), float(offset))
    line = "gaze response (output = gain * sketch + offset): " + ", ".join(f"{e} eye {g:.2f} * x {o:+.3f}" for e, (g, o) in fit.items())
    return GazeResponse({e: f[0] for e, f in fit.items()}, {e: f[1] for e, f in fit.items()}), line


def measure_gaze_response(g: torch.nn.Module, model: ModelDir, *, log: Callable[[str], None] = print) -> GazeResponse | None:
    """Where the generator draws each iris against where its sketch puts it, read by Face
    Mesh off the generated faces of ``gaze_sweep`` and fitted by ``fit_gaze_response``.

    Why: a generator trained briefly on a crossed-eyed clip draws irises pulled toward
    that clip's usual look; live inverts this fit so the output looks where the driver
    looks. None (live then takes the sketch as drawn) when the fit fails; ``log`` says why."""
    from models.landmarks import FaceMeshDetector

    c = model.contract
    asked, drawn = {eye: [] for eye in EYES}, {eye: [] for eye in EYES}
    pad = c.sketch.height // 2  # Face Mesh's detector wants room around a face
    with FaceMeshDetector(tracking=False) as detector, torch.no_grad():
        for want, pts in gaze_sweep(c):
            sketch = render_sketch(c.framing.apply(pts).astype(np.float32), c.sketch)
            face = tensor_to_images(g(images_to_tensor(sketch[None])))[0]
            found = detector.detect(cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE))
            if found is None:
                continue
            out = found.pixels().astype(np.float64)
            for eye in EYES:
                asked[eye].append(want[eye])
                drawn[eye].append(iris_position(out, eye)[0])
    response, line = fit_gaze_response(asked, drawn)
    log(line)
    return response


CPU_PACK_FILES = ("generator_fp32.onnx", "plate.png", "model_card.md")


def pack_for_cpu(model_dir: str | Path, dest: str | Path, *, card: str | None = None, light_card: str | None = None,
                 weights_fp16: bool = False) -> Path:
    """Copy what live needs on CPU cores from an exported model (and its lighter rung,
    MODEL/light) into ``dest``: the fp32 ONNX generator, the plate and the model card,
    under a model.json re-sealed for exactly those files. It keeps the model's ID (its
    generator.pt stays behind), so the watermark still names the weights. ``card`` and
    ``light_card`` replace the model cards (a trainer's card names its own folders).
    ``weights_fp16`` also keeps the main generator's weights, in half precision
    (``generator_fp16.pt``, half the size of generator.pt): enough to start another
    model's training from (``train --init-from``) or to run it with PyTorch. This is how
    the built-in character ships small.

    Written into ``dest.tmp`` and swapped in once verified: an interrupted pack never
    leaves a directory that looks complete."""
    from models.artifact import LIGHT_RUNG
    from models.files import atomic_write_text

    src_root, dest = Path(model_dir), Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("", LIGHT_RUNG):
        src = src_root / sub if sub else src_root
        if sub and not (src / "model.json").is_file():
            continue
        model = load_model_dir(src)
        if "generator_fp32.onnx" not in model.meta["files"]:
            raise ModelError(f"{src} has no generator_fp32.onnx: run `reenact export {src}` first")
        out = tmp / sub if sub else tmp
        out.mkdir(parents=True, exist_ok=True)
        for name in CPU_PACK_FILES:
            if name in model.meta["files"]:
                shutil.copy2(src / name, out / name)
        if weights_fp16 and not sub:
            import torch

            state = torch.load(src / "generator.pt", map_location="cpu", weights_only=True)
            torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, out / "generator_fp16.pt")
        replacement = light_card if sub else card
        if replacement is not None:
            atomic_write_text(out / "model_card.md", replacement)
        meta = {k: v for k, v in model.meta.items() if k not in ("files", "format", "version")}
        meta["model_id"] = model.model_id
        meta["provenance"] = _without_local_paths({k: v for k, v in meta.get("provenance", {}).items() if k != "dataset"})
        write_model_json(out, meta, [n for n in CPU_PACK_FILES + ("generator_fp16.pt",) if (out / n).is_file()])
        load_model_dir(out)  # what was packed verifies
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def reexport_packed(dest: str | Path, *, log: Callable[[str], None] = print) -> Path:
    """Re-export a CPU pack's main ONNX generator (``pack_for_cpu(..., weights_fp16=True)``)
    from the fp16 weights it ships, with this version's exporter: how the built-in
    character takes up a faster graph without being trained again. Its lighter rung ships
    no weights and keeps its ONNX. Done in ``dest.tmp`` and swapped in once verified."""
    dest = Path(dest)
    model = load_model_dir(dest)
    if "generator_fp16.pt" not in model.meta["files"]:
        raise ModelError(f"{dest} ships no generator_fp16.pt to export from")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(dest, tmp)
    export(tmp, log=log)  # writes both ONNX files and the gaze response into tmp/model.json
    (tmp / "generator_fp16.onnx").unlink()
    meta = {k: v for k, v in read_model_json(tmp).items() if k not in ("files", "format", "version")}
    write_model_json(tmp, meta, [n for n in CPU_PACK_FILES + ("generator_fp16.pt",) if (tmp / n).is_file()])
    if load_model_dir(tmp).model_id != model.model_id:
        raise ModelError(f"re-exporting {dest} would change its model ID; left as it was")
    shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def _without_local_paths(record):
    """``record`` with every absolute path cut to its file name: a shipped model must
    not carry the trainer's directory layout."""
    if isinstance(record, dict):
        return {k: _without_local_paths(v) for k, v in record.items()}
    if isinstance(record, list):
        return [_without_local_paths(v) for v in record]
    if isinstance(record, str) and Path(record).is_absolute():
        return Path(record).name
    return record
