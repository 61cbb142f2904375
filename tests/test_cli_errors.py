"""Bad inputs through the real command line, as a user meets them.

Each row runs ``reenact ...`` in a subprocess and checks: the documented exit code, that
the last line of stderr states the error (``reenact: <family>: ...``), that no traceback
appears, and that nothing half-written looks complete. The rows that should work (a
one-frame video, ``live`` with stdin closed, ``export`` repairing its own outputs) are
checked to work.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from tests.conftest import ctrl_c_as_at_a_terminal

ROOT = Path(__file__).resolve().parents[1]


def reenact(*argv: str, cwd: Path, stdin_closed: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
    """``reenact ARGV`` as a user runs it: a new process, cwd without a config.toml."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "reenact", *argv]
    if stdin_closed:  # as under some service managers: file descriptor 0 is not open at all
        cmd = ["bash", "-c", 'exec "$@" 0<&-', "reenact", *cmd]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=None if stdin_closed else subprocess.DEVNULL)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------- the bad files

class Hostile:
    """Unpickling this runs ``open(path, 'w')``: what a crafted checkpoint would do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


class NotATensor:
    """A picklable object that ``torch.load(weights_only=True)`` refuses."""


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_model, puppet_dataset):
    """Every bad (and borderline good) input of the table, built once."""
    import torch

    from live.sources import TARGET_SHAPE, PuppetSource
    from models.video import write_video

    d = tmp_path_factory.mktemp("bad")
    files: dict[str, Path] = {"dir": d}
    (d / "empty.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    face = PuppetSource(seed=4, shape=TARGET_SHAPE, size=(192, 192)).read().image
    cv2.imwrite(str(d / "image.png"), face)
    write_video(d / "one_frame.mp4", [face], 30.0)
    write_video(d / "no_face.mp4", [np.full((96, 128, 3), 90, np.uint8)] * 20, 30.0)
    (d / "afile").write_text("a regular file\n")

    # Datasets
    for name in ("ds_no_landmarks", "ds_manifest_keys", "ds_escape"):
        shutil.copytree(puppet_dataset, d / name)
    (d / "ds_no_landmarks" / "landmarks.npz").unlink()
    m = json.loads((d / "ds_manifest_keys" / "manifest.json").read_text())
    for key in ("framing", "samples"):
        m.pop(key)
    (d / "ds_manifest_keys" / "manifest.json").write_text(json.dumps(m))
    m = json.loads((d / "ds_escape" / "manifest.json").read_text())
    m["samples"][0]["id"] = "../../../../etc/passwd"
    (d / "ds_escape" / "manifest.json").write_text(json.dumps(m))

    # Checkpoints: a real one from the tiny model's run, then damaged copies
    for name in ("ck_keys", "ck_hostile", "ck_random", "ck_settings"):
        shutil.copytree(tiny_model, d / name)
    ck = torch.load(d / "ck_keys" / "checkpoint.pt", weights_only=True)
    ck.pop("opt_g")
    torch.save(ck, d / "ck_keys" / "checkpoint.pt")
    ck = torch.load(d / "ck_settings" / "checkpoint.pt", weights_only=True)
    ck["train"]["ndf"] = "wide"  # a recorded setting of the wrong type
    torch.save(ck, d / "ck_settings" / "checkpoint.pt")
    files["pwned"] = d / "PWNED"
    with open(d / "ck_hostile" / "checkpoint.pt", "wb") as f:
        pickle.dump({"G": Hostile(files["pwned"])}, f)
    (d / "ck_random" / "checkpoint.pt").write_bytes(b"\x80\x04" + os.urandom(2000))

    # Models
    for name in ("m_not_object", "m_refused_pt", "m_truncated_onnx", "m_deleted_onnx", "m_escape"):
        shutil.copytree(tiny_model, d / name)
    (d / "m_not_object" / "model.json").write_text("[1, 2, 3]")
    torch.save({"weight": NotATensor()}, d / "m_refused_pt" / "generator.pt")
    meta = json.loads((d / "m_refused_pt" / "model.json").read_text())
    pt = d / "m_refused_pt" / "generator.pt"
    import hashlib

    meta["files"]["generator.pt"] = {"sha256": hashlib.sha256(pt.read_bytes()).hexdigest(), "bytes": pt.stat().st_size}
    (d / "m_refused_pt" / "model.json").write_text(json.dumps(meta))
    onnx = d / "m_truncated_onnx" / "generator_fp32.onnx"
    onnx.write_bytes(onnx.read_bytes()[:500])
    (d / "m_deleted_onnx" / "generator_fp16.onnx").unlink()
    meta = json.loads((d / "m_escape" / "model.json").read_text())
    meta["files"]["../../escape.txt"] = {"sha256": "0" * 64, "bytes": 1}
    (d / "m_escape" / "model.json").write_text(json.dumps(meta))

    # Configs
    (d / "latin1.toml").write_bytes("[output]\nbadge_text = \"K\xfcnstlich\"\n".encode("latin-1"))
    (d / "config_dir").mkdir()
    files["model"] = tiny_model
    files["dataset"] = puppet_dataset
    return files


@dataclass
class Case:
    id: str
    argv: Callable[[dict], list[str]]
    code: int
    says: str = ""  # a fragment the last stderr line must contain
    stdin_closed: bool = False
    leaves_nothing: Callable[[dict], list[Path]] = field(default=lambda f: [])  # paths that must not exist afterwards
    then: Callable[[dict], None] | None = None  # what must be true after a run that should work


def _one_frame_dataset(root: Path) -> None:
    assert json.loads((root / "manifest.json").read_text())["frames_kept"] == 1


def _exported(model_dir: Path) -> None:
    from models.artifact import load_model_dir

    model = load_model_dir(model_dir)  # verifies every file's size and hash
    assert {"generator_fp32.onnx", "generator_fp16.onnx"} <= set(model.meta["files"])


def _recorded(video: Path, frames: int) -> None:
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) >= frames
    cap.release()


def _ds(f, name):
    return [str(f["dir"] / name)]


def _bad_video(name: str, video: str, out: str, says: str) -> Case:
    """A `dataset` row: this video fails with exit 1 and leaves no output folder."""
    return Case(name, lambda f: ["dataset", str(f["dir"] / video), "--out", str(f["dir"] / out), "--consent", "--target-name", "x"],
                1, says, leaves_nothing=lambda f: [f["dir"] / out])


CASES = [
    # -- videos given to `dataset` (and `bench`, `verify`)
    _bad_video("dataset-missing", "nope.mp4", "o1", "does not exist"),
    _bad_video("dataset-empty", "empty.mp4", "o2", "empty.mp4"),
    _bad_video("dataset-random-bytes", "random.mp4", "o3", "cannot be decoded"),
    _bad_video("dataset-text", "text.mp4", "o4", "cannot be decoded"),
    _bad_video("dataset-image", "image.png", "o5", "is an image, not a video"),
    _bad_video("dataset-no-face", "no_face.mp4", "o6", "no face found"),
    Case("dataset-one-frame-works", lambda f: ["dataset", str(f["dir"] / "one_frame.mp4"), "--out", str(f["dir"] / "o7"),
                                               "--consent", "--target-name", "x", "--set", "model.size=64",
                                               "--set", "model.depth=6"], 0,
         then=lambda f: _one_frame_dataset(f["dir"] / "o7")),
    Case("dataset-out-under-a-file", lambda f: ["dataset", str(f["dir"] / "one_frame.mp4"), "--out", str(f["dir"] / "afile" / "ds"),
                                                "--consent", "--target-name", "x"], 1, "afile"),
    Case("dataset-closed-stdin-needs-consent", lambda f: ["dataset", str(f["dir"] / "one_frame.mp4"), "--out", str(f["dir"] / "o8")],
         1, "consent record", stdin_closed=True, leaves_nothing=lambda f: [f["dir"] / "o8"]),
    # -- damaged datasets given to `train`
    Case("train-no-landmarks", lambda f: ["train", *_ds(f, "ds_no_landmarks"), "--out", str(f["dir"] / "t1"), "--set", "model.size=64",
                                          "--set", "model.depth=6"], 1, "landmarks.npz", leaves_nothing=lambda f: [f["dir"] / "t1" / "model.json"]),
    Case("train-manifest-keys", lambda f: ["train", *_ds(f, "ds_manifest_keys"), "--out", str(f["dir"] / "t2")], 1, "framing",
         leaves_nothing=lambda f: [f["dir"] / "t2" / "model.json"]),
    Case("train-manifest-escape", lambda f: ["train", *_ds(f, "ds_escape"), "--out", str(f["dir"] / "t3"), "--set", "model.size=64",
                                             "--set", "model.depth=6"], 1, "outside", leaves_nothing=lambda f: [f["dir"] / "t3" / "model.json"]),
    Case("train-missing-dataset", lambda f: ["train", str(f["dir"] / "nods"), "--out", str(f["dir"] / "t4")], 1, "nods"),
    Case("train-out-under-a-file", lambda f: ["train", str(f["dataset"]), "--out", str(f["dir"] / "afile" / "m"), "--set",
                                              "model.size=64", "--set", "model.depth=6", "--set", "train.steps=1"], 1, "afile"),
    Case("train-minutes-zero", lambda f: ["train", str(f["dataset"]), "--out", str(f["dir"] / "t5"), "--minutes", "0"], 2,
         "--minutes must be more than 0", leaves_nothing=lambda f: [f["dir"] / "t5"]),
    Case("train-minutes-nan", lambda f: ["train", str(f["dataset"]), "--out", str(f["dir"] / "t6"), "--minutes", "nan"], 2,
         "--minutes must be more than 0", leaves_nothing=lambda f: [f["dir"] / "t6"]),
    # -- checkpoints given to `train --resume`
    Case("resume-checkpoint-lacks-keys", lambda f: ["train", str(f["dataset"]), "--out", str(f["dir"] / "ck_keys"), "--resume"], 1,
         "opt_g"),
    Case("resume-hostile-checkpoint", lambda f: ["train", str(f["dataset"]), "--out", str(f["dir"] / "ck_hostile"), "--resume"], 1,
         "checkpoint", leaves_nothing=lambda f: [f["pwned"]]),
    Case("resume-checkpoint-bad-settings", lambda f: ["train", str(f["dataset"]), "--out", str(f["dir"] / "ck_settings"), "--resume"],
         1, "recorded training settings are unusable (train.ndf"),
    Case("resume-random-checkpoint", lambda f: ["train", str(f["dataset"]), "--out", str(f["dir"] / "ck_random"), "--resume"], 1,
         "checkpoint"),
    # -- model directories
    Case("live-model-json-not-object", lambda f: ["live", "--model", str(f["dir"] / "m_not_object"), "--source", "puppet",
                                                  "--frames", "3", "--no-virtual-camera"], 1, "model.json"),
    Case("export-refused-generator", lambda f: ["export", str(f["dir"] / "m_refused_pt")], 1, "generator.pt"),
    Case("export-repairs-truncated-onnx", lambda f: ["export", str(f["dir"] / "m_truncated_onnx")], 0,
         then=lambda f: _exported(f["dir"] / "m_truncated_onnx")),
    Case("export-repairs-deleted-onnx", lambda f: ["export", str(f["dir"] / "m_deleted_onnx")], 0,
         then=lambda f: _exported(f["dir"] / "m_deleted_onnx")),
    Case("model-file-escapes", lambda f: ["bench", "--model", str(f["dir"] / "m_escape"), "--source", str(f["dir"] / "one_frame.mp4")],
         1, "outside"),
    Case("model-is-a-file", lambda f: ["bench", "--model", str(f["dir"] / "afile"), "--source", str(f["dir"] / "one_frame.mp4")], 1,
         "not a directory"),
    Case("model-missing", lambda f: ["bench", "--model", str(f["dir"] / "nomodel"), "--source", str(f["dir"] / "one_frame.mp4")], 1,
         "does not exist"),
    Case("bench-random-source", lambda f: ["bench", "--model", str(f["model"]), "--source", str(f["dir"] / "random.mp4")], 1,
         "random.mp4"),
    Case("bench-record-under-a-file", lambda f: ["bench", "--model", str(f["model"]), "--source", str(f["dir"] / "one_frame.mp4"),
                                                 "--record", str(f["dir"] / "afile" / "out.mp4")], 1, "afile"),
    # -- configs
    Case("config-not-utf8", lambda f: ["config", "--config", str(f["dir"] / "latin1.toml")], 2, "not UTF-8"),
    Case("config-is-a-folder", lambda f: ["config", "--config", str(f["dir"] / "config_dir")], 2, "is a directory"),
    Case("config-nan", lambda f: ["config", "--set", "output.badge_opacity=nan"], 2, "must be a finite number"),
    Case("config-inf", lambda f: ["config", "--set", "live.budget_ms=inf"], 2, "must be a finite number"),
    Case("config-blank-badge", lambda f: ["config", "--set", "output.badge_text=' '"], 2, "must not be empty"),
    Case("config-non-ascii-badge", lambda f: ["config", "--set", "output.badge_text='KI-generiert ✓'"], 2, "ASCII"),
    # -- verify
    Case("verify-unreadable", lambda f: ["verify", str(f["dir"] / "random.mp4")], 1, "random.mp4"),
    Case("verify-no-watermark", lambda f: ["verify", str(f["dir"] / "no_face.mp4")], 3),
    # -- live with stdin closed, where nothing needs asking, works
    Case("live-closed-stdin-works", lambda f: ["live", "--model", str(f["model"]), "--source", "puppet", "--frames", "5",
                                               "--no-virtual-camera", "--record", str(f["dir"] / "live.mp4"),
                                               "--json", str(f["dir"] / "live.json")], 0, stdin_closed=True,
         then=lambda f: _recorded(f["dir"] / "live.mp4", 5)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line_and_its_exit_code(case: Case, bad, tmp_path):
    res = reenact(*case.argv(bad), cwd=tmp_path, stdin_closed=case.stdin_closed)
    if os.environ.get("SHOW_LINES"):
        print(f"\n{case.id}: exit {res.returncode}: {last_line(res.stderr) or last_line(res.stdout)}")
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.returncode == case.code, f"exit {res.returncode}\nstdout: {res.stdout[-1500:]}\nstderr: {res.stderr[-1500:]}"
    if case.code != 0:
        line = last_line(res.stderr) if case.code != 3 else last_line(res.stdout)
        if case.code != 3:
            assert line.startswith("reenact: ") and "error" in line, res.stderr[-1500:]
        assert case.says in line, line
    for path in case.leaves_nothing(bad):
        assert not path.exists(), f"{path} was left behind"
    assert not list(bad["dir"].glob("**/.*partial*")), "a half-written file was left under a hidden partial name"
    if case.then is not None:
        case.then(bad)


def test_a_ctrl_c_landing_as_the_command_returns_still_exits_130_not_by_sigint(tmp_path):
    """The console entry point: a Ctrl-C that reaches Python just as the command returns
    (pressed twice, or delivered late) must not kill the process by SIGINT, which a
    script or a test sees as a crash (exit -2), not as "interrupted" (130)."""
    code = ("import signal, reenact.cli as cli\n"
            "def main(argv=None):\n"
            "    print('answered the first Ctrl-C', flush=True)\n"
            "    signal.raise_signal(signal.SIGINT)  # the second, as the command returns\n"
            "    return 130\n"
            "cli.main = main\n"
            "cli.run()\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL, preexec_fn=ctrl_c_as_at_a_terminal)
    assert res.returncode == 130, f"exit {res.returncode}\n{res.stderr[-1500:]}"
    assert "answered the first Ctrl-C" in res.stdout and "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["bench", "live"])
def test_ctrl_c_stops_with_exit_130_and_keeps_the_report(command, bad, tmp_path):
    """Interrupted is its own outcome (130), for bench and live as for dataset and
    train; the latency report of the part that ran is still written."""
    import signal
    import time

    from live.sources import PuppetSource
    from models.video import write_video

    report = tmp_path / "report.json"
    clip = tmp_path / "puppet.mp4"  # a clip of its own: the looping of a one-frame file is not what this tests
    puppet = PuppetSource(seed=5, size=(192, 192))
    write_video(clip, [puppet.read().image for _ in range(30)], 30.0)
    args = {"bench": ["bench", "--model", str(bad["model"]), "--source", str(clip), "--loop", "60",
                      "--json", str(report)],
            "live": ["live", "--model", str(bad["model"]), "--source", "puppet", "--no-virtual-camera",
                     "--record", str(tmp_path / "live.mp4"), "--json", str(report)]}[command]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "reenact", *args], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_at_a_terminal)
    started = time.monotonic()
    for line in proc.stdout:  # wait until frames flow
        if line.startswith("live: engine") or time.monotonic() - started > 120:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, f"exit {proc.returncode}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}"
    assert "Traceback" not in err
    assert json.loads(report.read_text())["frames_out"] > 0
    if command == "live":
        _recorded(tmp_path / "live.mp4", 1)  # the recording of the part that ran is complete and playable
