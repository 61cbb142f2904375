"""Whose face is it? A small identity classifier for checking a face swap (issue 20).

Trains a CNN on the inner face (the aligned crop where the face-oval mask is solid, the
region a swap replaces whole; grey, contrast-normalised: no hair, no background, no white
balance to lean on) of each person's dataset, checks it on their held-out time blocks,
then classifies:

* the faces a swap model puts on the user's held-out frames (live's swap pipeline,
  aligned by the *input's* landmarks: exactly the region the swap replaced), and
* the same frames unswapped.

A swap that works is classified as the target; a pass-through stays the user, and a
blur is neither. The classifier learns from real people's clips, so its weights are
never saved or shipped: it is trained afresh on each run (about a minute on 2 cores).

    .venv/bin/python tools/identity_check.py --model SWAP_MODEL --people d3=DS d6=DS ... \
        --target d6 --user d10 --json identity.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.swap import alignment, align, face_mask, make_template, transform_points  # noqa: E402

SIZE = 64
BLUR_SIGMA = 2.0  # pixels of the 64 px crop: about what a 128 px swap that has not learnt detail looks like


# Where the face mask is at least this, the live blend shows the swapped face alone. The
# feathered ring outside it is mostly the user's own skin, by design (the blend fades into
# the user's frame); cut there, the check (first version: mask > 0.05) read that ring and
# called 31.7 % of an unguided swap d6 that it calls d6 in 60 of 60 frames cut here.
REPLACED = 0.95


def inner_face(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 crop, (S, S) face mask -> (S, S) float32: grey, zero-mean
    unit-variance where the mask is at least ``REPLACED``, 0 elsewhere."""
    g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    inside = mask >= REPLACED
    mu, sd = g[inside].mean(), g[inside].std() + 1e-3
    return ((g - mu) / sd * inside).astype(np.float32)


def faces_of(dataset: Path, split: str, template) -> np.ndarray:
    from training.swap import FaceSet

    fs = FaceSet(dataset, split, template)
    return np.stack([inner_face(c, m) for c, m in zip(fs.crops, fs.masks)])


class Classifier(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                                 nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.net = nn.Sequential(block(1, 32), block(32, 64), block(64, 128), block(128, 128), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, classes))

    def forward(self, x):
        return self.net(x)


def jitter(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small similarity jitter, flips, contrast and blur: the classifier must not key on
    exact pixel placement or sharpness."""
    out = np.empty_like(batch)
    for i, img in enumerate(batch):
        m = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), rng.uniform(-8, 8), 1 + rng.uniform(-0.05, 0.05))
        m[:, 2] += rng.uniform(-0.04, 0.04, 2) * SIZE
        a = cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        if rng.uniform() < 0.5:
            a = a[:, ::-1]
        if rng.uniform() < 0.3:
            a = cv2.GaussianBlur(a, (0, 0), rng.uniform(0.5, 1.5))
        out[i] = a * rng.uniform(0.8, 1.2)
    return out


def train_classifier(train: list[np.ndarray], *, epochs: int, seed: int = 0, log=print) -> Classifier:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = np.concatenate(train)
    y = np.concatenate([np.full(len(t), k) for k, t in enumerate(train)])
    weights = 1.0 / np.bincount(y)[y]  # balanced: a person with a long clip must not win by default
    net = Classifier(len(train))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps = epochs * len(x) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    net.train()
    for step in range(steps):
        idx = rng.choice(len(x), 64, p=weights / weights.sum())
        xb = torch.from_numpy(jitter(x[idx], rng))[:, None]
        loss = nn.functional.cross_entropy(net(xb), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0:
            log(f"  classifier step {step + 1}/{steps}: loss {loss.item():.3f}")
    return net.eval()


@torch.no_grad()
def predict(net: Classifier, faces: np.ndarray) -> np.ndarray:
    return np.concatenate([net(torch.from_numpy(faces[i : i + 256])[:, None]).argmax(1).numpy() for i in range(0, len(faces), 256)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="the swap model directory")
    ap.add_argument("--people", nargs="+", required=True, metavar="NAME=DATASET", help="each person's dataset (reenact dataset)")
    ap.add_argument("--target", required=True, help="the NAME of the swap's target")
    ap.add_argument("--user", required=True, help="the NAME of the swap's user (whose held-out blocks are swapped)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    people = dict(p.split("=", 1) for p in args.people)
    names = sorted(people)
    template = make_template(SIZE)
    t0 = time.time()
    train = [faces_of(Path(people[n]), "train", template) for n in names]
    val = [faces_of(Path(people[n]), "val", template) for n in names]
    print(f"faces: " + ", ".join(f"{n} {len(t)}/{len(v)}" for n, t, v in zip(names, train, val)) + f" ({time.time() - t0:.0f} s)")
    net = train_classifier(train, epochs=args.epochs)
    per_person = {n: float(np.mean(predict(net, v) == k)) for k, (n, v) in enumerate(zip(names, val))}
    val_acc = float(np.mean(np.concatenate([predict(net, v) == k for k, v in enumerate(val)])))
    print(f"held-out accuracy {100 * val_acc:.1f} % (" + ", ".join(f"{n} {100 * a:.0f} %" for n, a in per_person.items()) + ")")
    swapped, original, frames = render_swaps(Path(args.model), Path(people[args.user]), template)
    ps, po = predict(net, swapped), predict(net, original)
    # The control: the user's own faces blurred as much as a blurry swap is. A check that
    # called these the target would be rewarding blur, not identity.
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), BLUR_SIGMA) for f in original])
    pb = predict(net, blurred)
    result = {
        "classifier_val_accuracy": round(val_acc, 4), "per_person_val_accuracy": {n: round(a, 4) for n, a in per_person.items()},
        "frames": frames, "swapped_faces": len(swapped),
        "swapped_as_target": round(float(np.mean(ps == names.index(args.target))), 4),
        "swapped_as_user": round(float(np.mean(ps == names.index(args.user))), 4),
        "swapped_votes": {n: int(np.sum(ps == k)) for k, n in enumerate(names)},
        "unswapped_as_user": round(float(np.mean(po == names.index(args.user))), 4),
        "blurred_user_as_target": round(float(np.mean(pb == names.index(args.target))), 4),
        "blurred_votes": {n: int(np.sum(pb == k)) for k, n in enumerate(names)},
        "unswapped_votes": {n: int(np.sum(po == k)) for k, n in enumerate(names)},
    }
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"swapped faces classified as {args.target}: {100 * result['swapped_as_target']:.1f} % ({result['swapped_votes']}); "
          f"unswapped as {args.user}: {100 * result['unswapped_as_user']:.1f} %; the user blurred, as {args.target}: "
          f"{100 * result['blurred_user_as_target']:.1f} % ({result['blurred_votes']})")
    return 0


def render_swaps(model_dir: Path, user_dataset: Path, template) -> tuple[np.ndarray, np.ndarray, int]:
    """(swapped inner faces, unswapped inner faces, frames): the user's held-out blocks
    through live's swap pipeline (reenact eval's renderer); both cut from the output
    and the input frame by Face Mesh on the *input*, mapped into the output frame."""
    from live.pipeline import fit_into
    from models.artifact import load_swap_model
    from models.config import load_config
    from models.landmarks import FaceMeshDetector
    from reenact.eval import Setup, SwapRenderer, _frames_between, val_blocks
    from training.dataset import load_manifest

    cfg = load_config(None, [])
    out_size = (cfg.output.width, cfg.output.height)
    setup = Setup(load_swap_model(model_dir), cfg.live, cfg.landmarks, out_size, lambda s: None)
    renderer = SwapRenderer(setup)
    manifest = load_manifest(user_dataset)
    swapped, original, frames = [], [], 0
    try:
        with FaceMeshDetector(tracking=True) as det:
            for video, numbers in val_blocks(manifest):
                source = manifest["sources"][video]
                block = list(_frames_between(Path(source["path"]), numbers[0], numbers[-1]))
                det.reset()
                for image, output in zip(block, renderer.render(iter(block), source["fps"], start=numbers[0])):
                    frames += 1
                    lm = det.detect(image)
                    if lm is None:
                        continue
                    placed = fit_into(image, out_size)  # the input as the output frame holds it
                    px = renderer.pipeline._to_output(lm.pixels().astype(np.float64), image.shape)
                    m = alignment(px, template)
                    mask = face_mask(transform_points(px, m), SIZE)
                    swapped.append(inner_face(align(output, m, SIZE), mask))
                    original.append(inner_face(align(placed, m, SIZE), mask))
    finally:
        renderer.close()
    return np.stack(swapped), np.stack(original), frames


if __name__ == "__main__":
    sys.exit(main())
