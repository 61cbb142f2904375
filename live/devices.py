"""What devices this machine has: cameras, audio inputs and outputs, virtual cameras.
Used by `reenact devices` (names to copy into config.toml) and `reenact doctor`."""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

V4L_ROOT = Path("/sys/class/video4linux")


@dataclass(frozen=True)
class Device:
    kind: str  # camera | virtual-camera | audio-in | audio-out
    index: str  # what to put in config.toml
    name: str
    detail: str = ""


def video_devices(root: Path = V4L_ROOT) -> list[Device]:
    """V4L2 devices (Linux). v4l2loopback devices are virtual: they live under
    /sys/devices/virtual, real cameras under a bus (usb, pci)."""
    out = []
    if not root.is_dir():
        return out
    for dev in sorted(root.iterdir(), key=lambda p: (len(p.name), p.name)):
        try:
            name = (dev / "name").read_text().strip()
        except OSError:
            continue
        index = dev.name.replace("video", "")
        virtual = "/virtual/" in str(dev.resolve())
        out.append(Device("virtual-camera" if virtual else "camera", f"/dev/{dev.name}" if virtual else index, name))
    return out


def audio_devices() -> tuple[list[Device], str | None]:
    """(devices, problem): PortAudio's inputs and outputs, or why they cannot be listed."""
    try:
        import sounddevice as sd
    except OSError as e:
        return [], f"PortAudio is not installed ({e}); install libportaudio2"
    out = []
    try:
        for i, d in enumerate(sd.query_devices()):
            api = sd.query_hostapis(d["hostapi"])["name"]
            if d["max_input_channels"] > 0:
                out.append(Device("audio-in", str(i), d["name"], f"{api}, {d['max_input_channels']} ch"))
            if d["max_output_channels"] > 0:
                out.append(Device("audio-out", str(i), d["name"], f"{api}, {d['max_output_channels']} ch"))
    except Exception as e:  # noqa: BLE001 - PortAudio failing to enumerate is a finding, not a crash
        return out, f"PortAudio could not list devices: {e}"
    return out, None


VIRTUAL_MIC_HINTS = ("monitor", "null", "vb-audio", "cable", "blackhole", "loopback", "virtual")


def report() -> str:
    lines = []
    vids = video_devices()
    cams = [d for d in vids if d.kind == "camera"]
    vcams = [d for d in vids if d.kind == "virtual-camera"]
    lines.append("Cameras (capture.camera = index or part of the name):")
    lines += [f"  {d.index:>4}  {d.name}" for d in cams] or ["  none found" + ("" if platform.system() == "Linux" else " (listing needs Linux; try capture.camera = \"0\")")]
    lines.append("Virtual cameras (output.device):")
    lines += [f"  {d.index}  {d.name}" for d in vcams] or ["  none found: see `reenact doctor` for how to add one"]
    audio, problem = audio_devices()
    for kind, title in (("audio-in", "Audio inputs (audio.input)"), ("audio-out", "Audio outputs (audio.output; a virtual microphone is marked *)")):
        lines.append(f"{title}:")
        devs = [d for d in audio if d.kind == kind]
        for d in devs:
            mark = "*" if kind == "audio-out" and any(h in d.name.lower() for h in VIRTUAL_MIC_HINTS) else " "
            lines.append(f"  {d.index:>4}{mark} {d.name}  ({d.detail})")
        if not devs:
            lines.append(f"  none found{': ' + problem if problem else ''}")
    return "\n".join(lines)
