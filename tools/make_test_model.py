"""How tests/data/puppet_model was made: a small model of the synthetic puppet (no real
person), fast enough to run at 30 fps on one slow CPU core, for the tests that need a
trained face (the A/V sync test). Run from the repository root; about 40 min on one
core of the project's slower 2-core machines.

    .venv/bin/python tools/make_test_model.py /tmp/puppet_model
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

FILES = ("generator.pt", "generator_fp32.onnx", "generator_fp16.onnx", "plate.png", "model.json", "model_card.md")


def main(work: Path) -> None:
    run = lambda *a: subprocess.run([sys.executable, "-m", "reenact", *a, "--quiet"], check=True)  # noqa: E731
    run("puppet", "--out", str(work / "target.mp4"), "--face", "target", "--seconds", "30", "--seed", "7", "--size", "480")
    run("dataset", str(work / "target.mp4"), "--out", str(work / "ds"), "--target-name", "synthetic puppet (no real person)",
        "--consent", "--set", "model.size=128", "--set", "model.depth=7")
    run("train", str(work / "ds"), "--out", str(work / "m"), "--set", "model.size=128", "--set", "model.depth=7",
        "--set", "model.ngf=8", "--set", "model.upsample=resize", "--set", "train.ndf=16", "--set", "train.steps=2500")
    run("export", str(work / "m"))
    dest = Path(__file__).resolve().parents[1] / "tests" / "data" / "puppet_model"
    dest.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copyfile(work / "m" / name, dest / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
