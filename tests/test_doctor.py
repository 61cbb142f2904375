"""reenact doctor on fake machines: every gap is found and comes with its fix."""
from __future__ import annotations

from live.devices import Device
from live.doctor import REQUIRED, Probe, format_report, run_checks


def good_linux(**kw) -> Probe:
    p = Probe(system="Linux", python=(3, 11, 7), packages={d: "1.0" for d in REQUIRED} | {"mediapipe": "0.10.21", "numpy": "1.26.4"},
              opencv_wheels=["opencv-contrib-python"], nvidia_driver=True, torch_cuda=True, gpu_name="NVIDIA H100", cuda_version="12.4",
              cudnn_version="90100", ort_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
              video=[Device("camera", "0", "C920"), Device("virtual-camera", "/dev/video10", "reenact")],
              v4l2loopback_loaded=True, exclusive_caps="Y", device_access={"/dev/video0": True, "/dev/video10": True},
              audio=[Device("audio-in", "1", "USB mic"), Device("audio-out", "2", "reenact_mic (null sink)")])
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def problems(p: Probe) -> dict[str, str]:
    return {c.area: c.fix for c in run_checks(p) if c.ok is False}


def test_a_complete_machine_has_nothing_to_fix():
    checks = run_checks(good_linux())
    assert not [c for c in checks if c.ok is False]
    assert "torch-cuda" in format_report(checks) and "everything reenact needs is here" in format_report(checks)


def test_this_kind_of_machine_no_gpu_camera_or_virtual_camera():
    p = good_linux(nvidia_driver=False, torch_cuda=False, ort_providers=["CPUExecutionProvider"], video=[],
                   v4l2loopback_loaded=False, exclusive_caps="", device_access={}, audio=[], audio_problem=None)
    found = problems(p)
    assert {"gpu", "camera", "virtual camera"} <= set(found)
    assert "exclusive_caps=1" in found["virtual camera"] and "modprobe v4l2loopback" in found["virtual camera"]
    report = format_report(run_checks(p))
    assert "ort-cpu with generator_fp32.onnx" in report


def test_secure_boot_and_missing_exclusive_caps_are_explained():
    p = good_linux(v4l2loopback_loaded=False, secure_boot=True)
    assert any("Secure Boot" in c.finding for c in run_checks(p))
    p = good_linux(exclusive_caps="N")
    assert "exclusive_caps=1" in problems(p)["virtual camera"]


def test_two_opencv_wheels_and_wrong_versions():
    p = good_linux(opencv_wheels=["opencv-python", "opencv-contrib-python"])
    assert "pip uninstall -y opencv-python" in problems(p)["opencv"]
    p = good_linux(packages={**good_linux().packages, "mediapipe": "0.10.30", "numpy": "2.1.0"})
    fixes = [c.fix for c in run_checks(p) if c.ok is False]
    assert any("mediapipe==0.10.21" in f for f in fixes) and any("numpy<2" in f for f in fixes)
    p = good_linux(packages={**good_linux().packages, "sounddevice": None})
    assert "sounddevice" in [c for c in run_checks(p) if c.area == "packages"][0].finding


def test_cuda_driver_without_cuda_torch_and_device_permissions():
    p = good_linux(torch_cuda=False)
    assert "TORCH_SPEC" in problems(p)["gpu"]
    p = good_linux(device_access={"/dev/video0": False})
    assert "usermod -aG video" in problems(p)["camera"]


def test_audio_gaps_per_os():
    p = good_linux(audio=[], audio_problem="PortAudio is not installed")
    assert "libportaudio2" in problems(p)["audio"]
    p = good_linux(audio=[Device("audio-in", "0", "mic"), Device("audio-out", "1", "speakers")])
    assert "module-null-sink" in problems(p)["virtual mic"]
    p = good_linux(system="Windows", audio=[Device("audio-in", "0", "mic"), Device("audio-out", "1", "speakers")])
    assert "VB-Cable" in problems(p)["virtual mic"]
    assert any("OBS" in c.fix for c in run_checks(p) if c.area == "virtual camera")


def test_doctor_runs_on_this_machine(capsys):
    """On the real machine: every area is reported, and every problem comes with its fix."""
    from reenact.cli import main

    assert main(["doctor"]) == 0  # missing hardware is reported, it is not a broken install
    lines = capsys.readouterr().out.splitlines()
    areas = {line[7:].split()[0] for line in lines if line.startswith("[")}
    assert {"python", "packages", "gpu", "engine", "audio"} <= areas
    for i, line in enumerate(lines):
        if line.startswith("[FIX ]"):
            assert "fix:" in lines[i + 1], line
