"""``reenact doctor``: what this machine has, what it lacks, and the exact fix for each gap.

``Probe`` gathers every fact doctor looks at (``Probe.collect()`` on the real machine;
tests build one by hand); ``run_checks`` turns a probe into ``Check`` results. No check
ever raises: a probe that fails is itself a finding.
"""
from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

from live.devices import VIRTUAL_MIC_HINTS, Device, audio_devices, video_devices
from live.sinks import virtual_camera_fix

REQUIRED = {  # distribution -> why
    "torch": "training and the PyTorch engines",
    "mediapipe": "face landmarks",
    "numpy": "everything",
    "onnxruntime-gpu": "the ONNX engines (its CPU provider runs anywhere)",
    "pyvirtualcam": "the virtual camera",
    "sounddevice": "lip-sync audio",
    "opencv-contrib-python": "video decoding and drawing",
}


@dataclass
class Probe:
    system: str = platform.system()
    python: tuple = tuple(sys.version_info[:3])
    packages: dict = field(default_factory=dict)  # distribution -> version or None
    opencv_wheels: list = field(default_factory=list)  # installed opencv* distributions
    nvidia_driver: bool = False
    torch_cuda: bool = False
    gpu_name: str = ""
    cuda_version: str = ""
    cudnn_version: str = ""
    ort_providers: list = field(default_factory=list)
    video: list = field(default_factory=list)  # live.devices.Device
    v4l2loopback_loaded: bool = False
    exclusive_caps: str = ""  # the module parameter, e.g. "Y,N"
    secure_boot: bool | None = None
    device_access: dict = field(default_factory=dict)  # /dev/videoN -> can read+write
    audio: list = field(default_factory=list)
    audio_problem: str | None = None

    @staticmethod
    def collect() -> "Probe":
        from importlib import metadata

        p = Probe()
        for dist in list(REQUIRED) + ["opencv-python", "opencv-python-headless", "opencv-contrib-python-headless"]:
            try:
                p.packages[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                p.packages[dist] = None
        p.opencv_wheels = [d for d in ("opencv-python", "opencv-contrib-python", "opencv-python-headless",
                                       "opencv-contrib-python-headless") if p.packages.get(d)]
        from live.engines import nvidia_driver_present

        p.nvidia_driver = nvidia_driver_present()
        try:
            import torch

            p.torch_cuda = torch.cuda.is_available()
            if p.torch_cuda:
                p.gpu_name = torch.cuda.get_device_name(0)
                p.cuda_version = str(torch.version.cuda)
                p.cudnn_version = str(torch.backends.cudnn.version())
        except Exception:  # noqa: BLE001
            pass
        try:
            import onnxruntime as ort

            p.ort_providers = list(ort.get_available_providers())
        except Exception:  # noqa: BLE001
            pass
        p.video = video_devices()
        module = Path("/sys/module/v4l2loopback")
        p.v4l2loopback_loaded = module.is_dir()
        caps = module / "parameters" / "exclusive_caps"
        if caps.is_file():
            p.exclusive_caps = caps.read_text().strip()
        p.secure_boot = _secure_boot()
        import os

        for d in p.video:
            path = d.index if d.index.startswith("/dev/") else f"/dev/video{d.index}"
            p.device_access[path] = os.access(path, os.R_OK | os.W_OK)
        p.audio, p.audio_problem = audio_devices()
        return p


def _secure_boot() -> bool | None:
    efivars = Path("/sys/firmware/efi/efivars")
    try:
        for f in efivars.glob("SecureBoot-*"):
            return f.read_bytes()[-1] == 1
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class Check:
    area: str
    ok: bool | None  # True fine, False a problem, None just information
    finding: str
    fix: str = ""


def run_checks(p: Probe) -> list[Check]:
    """Every finding about this machine, in the order the report prints them."""
    return _package_checks(p) + _gpu_checks(p) + _camera_checks(p) + _virtual_camera_checks(p) + _audio_checks(p)


def _package_checks(p: Probe) -> list[Check]:
    out: list[Check] = []
    if (3, 10) <= p.python[:2] <= (3, 12):
        out.append(Check("python", True, f"Python {'.'.join(map(str, p.python))}"))
    else:
        out.append(Check("python", False, f"Python {'.'.join(map(str, p.python))}: mediapipe 0.10.21 has wheels for 3.10-3.12 only",
                         "install Python 3.11 and re-run `bash scripts/setup.sh`"))
    missing = [d for d in REQUIRED if not p.packages.get(d)]
    if missing:
        out.append(Check("packages", False, "missing: " + ", ".join(f"{d} ({REQUIRED[d]})" for d in missing),
                         "bash scripts/setup.sh"))
    else:
        out.append(Check("packages", True, ", ".join(f"{d} {p.packages[d]}" for d in REQUIRED)))
    mp = p.packages.get("mediapipe")
    if mp and mp != "0.10.21":
        out.append(Check("packages", False, f"mediapipe {mp}: only 0.10.21 bundles the Face Mesh models reenact uses",
                         ".venv/bin/pip install mediapipe==0.10.21"))
    np_ver = p.packages.get("numpy") or ""
    if np_ver.startswith("2"):
        out.append(Check("packages", False, f"numpy {np_ver}: mediapipe 0.10.21 needs numpy < 2", ".venv/bin/pip install 'numpy<2'"))
    if len(p.opencv_wheels) > 1:
        extra = [w for w in p.opencv_wheels if w != "opencv-contrib-python"]
        out.append(Check("opencv", False, f"{len(p.opencv_wheels)} OpenCV wheels installed ({', '.join(p.opencv_wheels)}): they "
                         "overwrite each other's cv2 module", f".venv/bin/pip uninstall -y {' '.join(extra)} && "
                         ".venv/bin/pip install --force-reinstall opencv-contrib-python"))
    return out


def _gpu_checks(p: Probe) -> list[Check]:
    out: list[Check] = []
    if p.torch_cuda:
        out.append(Check("gpu", True, f"{p.gpu_name}, CUDA {p.cuda_version}, cuDNN {p.cudnn_version}"))
    elif p.nvidia_driver:
        out.append(Check("gpu", False, "an NVIDIA driver is present but this PyTorch cannot use CUDA (CPU build?)",
                         "TORCH_SPEC='torch --index-url https://download.pytorch.org/whl/cu124' bash scripts/setup.sh"))
    else:
        out.append(Check("gpu", False, "no NVIDIA GPU (no libcuda): live runs on the CPU with the small CPU model",
                         "for the full-size model, use a machine with an NVIDIA GPU and its driver; on this one, derive the "
                         "CPU model from a trained one (`reenact train DATASET --teacher MODEL_DIR --preset cpu`) or train "
                         "it directly (`reenact train DATASET --out DIR --preset cpu`)"))
    out.append(Check("engine", None, engine_choice(p)))
    return out


def _camera_checks(p: Probe) -> list[Check]:
    out: list[Check] = []
    cams = [d for d in p.video if d.kind == "camera"]
    if cams:
        out.append(Check("camera", True, ", ".join(f"{d.index}: {d.name}" for d in cams)))
    elif p.system == "Linux":
        out.append(Check("camera", False, "no camera found (/sys/class/video4linux has none)",
                         "plug in a webcam (check `lsusb`), or drive from a file: reenact live --source clip.mp4"))
    else:
        out.append(Check("camera", None, "cameras are not listed on this OS; reenact live tries capture.camera = \"0\""))
    for path, ok in p.device_access.items():
        if not ok:
            out.append(Check("camera", False, f"{path} is not readable and writable by you",
                             "sudo usermod -aG video $USER, then log out and back in"))
    return out


def _audio_checks(p: Probe) -> list[Check]:
    out: list[Check] = []
    ins = [d for d in p.audio if d.kind == "audio-in"]
    outs = [d for d in p.audio if d.kind == "audio-out"]
    if p.audio_problem and not p.audio:
        out.append(Check("audio", False, p.audio_problem, "sudo apt-get install libportaudio2"))
    elif not ins:
        out.append(Check("audio", False, "no microphone found", "plug in a microphone, or keep audio.enabled = false"))
    else:
        out.append(Check("audio", True, f"{len(ins)} input(s), {len(outs)} output(s)"))
    if p.audio or not p.audio_problem:
        vmics = [d for d in outs if any(h in d.name.lower() for h in VIRTUAL_MIC_HINTS)]
        if vmics:
            out.append(Check("virtual mic", True, ", ".join(d.name for d in vmics)))
        else:
            fix = {"Linux": "pactl load-module module-null-sink sink_name=reenact_mic  (then audio.output = \"reenact_mic\"; "
                            "the call app's microphone is \"Monitor of reenact_mic\")",
                   "Windows": "install VB-Cable, then audio.output = \"CABLE Input\"",
                   "Darwin": "install BlackHole, then audio.output = \"BlackHole 2ch\""}.get(p.system, "install a virtual audio cable")
            out.append(Check("virtual mic", False, "no virtual microphone: the call app would hear the undelayed mic", fix))
    return out


def _virtual_camera_checks(p: Probe) -> list[Check]:
    if p.system != "Linux":
        return [Check("virtual camera", None, "uses OBS Virtual Camera on this OS", virtual_camera_fix(p.system))]
    vcams = [d for d in p.video if d.kind == "virtual-camera"]
    sb = " Secure Boot is on: the unsigned module will not load until you enrol a MOK key (sudo mokutil --import the DKMS key) or turn Secure Boot off." if p.secure_boot else ""
    if not p.v4l2loopback_loaded:
        return [Check("virtual camera", False, "v4l2loopback is not loaded: no virtual camera for OBS/Zoom/Meet/Teams" + ("." if not sb else ";" + sb),
                      virtual_camera_fix("Linux"))]
    out = []
    if "Y" not in p.exclusive_caps and "1" not in p.exclusive_caps:
        out.append(Check("virtual camera", False, "v4l2loopback is loaded without exclusive_caps=1: Chrome, Zoom and Teams will not list it",
                         "sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback devices=1 video_nr=10 card_label=reenact exclusive_caps=1"))
    if vcams:
        out.append(Check("virtual camera", True, ", ".join(f"{d.index} ({d.name})" for d in vcams)))
    else:
        out.append(Check("virtual camera", False, "v4l2loopback is loaded but has no device",
                         "sudo modprobe -r v4l2loopback && sudo modprobe v4l2loopback devices=1 exclusive_caps=1"))
    return out


def engine_choice(p: Probe) -> str:
    """Which engine `live.engine = "auto"` will use here, with which artifact, and why."""
    if p.torch_cuda:
        return f"live will use torch-cuda (fp16, CUDA graphs) with generator.pt on {p.gpu_name}"
    if p.nvidia_driver and "CUDAExecutionProvider" in p.ort_providers:
        return "live will use ort-cuda with generator_fp16.onnx (PyTorch has no CUDA here)"
    why = "no NVIDIA driver" if not p.nvidia_driver else "no CUDA-capable engine"
    return (f"live will use ort-cpu with generator_fp32.onnx ({why}; on CPUs fp32 runs faster than fp16), "
            "from MODEL_DIR/cpu, the distilled CPU model, when the model has one")


def format_report(checks: list[Check]) -> str:
    marks = {True: "ok  ", False: "FIX ", None: "info"}
    lines = []
    for c in checks:
        lines.append(f"[{marks[c.ok]}] {c.area:<15} {c.finding}")
        if c.ok is False and c.fix:
            lines.append(f"       {'':<15} fix: {c.fix}")
    problems = sum(c.ok is False for c in checks)
    lines.append(f"\n{problems} thing(s) to fix" if problems else "\neverything reenact needs is here")
    return "\n".join(lines)
