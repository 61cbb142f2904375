"""The dataset's coverage report: which expressions and head poses the target clip
shows, and a plain warning when it is too narrow to drive what users will do live."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.faces import base_face
from models.geometry import expression, head_pose

# name -> (bin edges, label); all expression signals are in IODs, poses in degrees.
HISTOGRAMS = {
    "mouth_open": (np.linspace(0.0, 0.8, 17), "mouth opening (inner-lip gap / IOD)"),
    "eye_closure": (np.linspace(0.0, 1.0, 11), "eye closure (1 - openness / neutral openness)"),
    "yaw": (np.linspace(-45, 45, 19), "yaw (degrees, relative to frontal)"),
    "pitch": (np.linspace(-30, 30, 13), "pitch (degrees, relative to frontal)"),
}

# What a live session typically asks of a model, and the message when a clip lacks it.
CHECKS = (
    ("mouth_open", 0.25, 0.98, "The mouth never opens wide (max {v:.2f} IOD, want ≥ 0.25): talk, laugh and open wide while recording, or the model will not open the mouth."),
    ("eye_closure", 0.6, 0.995, "The eyes never close (max closure {v:.2f}, want ≥ 0.6): blink naturally while recording, or the target will never blink."),
    ("yaw_span", 20.0, None, "Little head turning (yaw span {v:.0f}°, want ≥ 20°): turn the head left and right a little while recording."),
    ("pitch_span", 10.0, None, "Little nodding (pitch span {v:.0f}°, want ≥ 10°): look up and down a little while recording."),
)


def signals(faces_px: np.ndarray, neutral_px: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame coverage signals of (F, 478, 3) pixel faces."""
    ref = base_face()
    neutral_eye = max(expression(neutral_px).eye_open, 1e-6)
    out: dict[str, list[float]] = {k: [] for k in ("mouth_open", "eye_closure", "yaw", "pitch", "brow_height")}
    for f in faces_px:
        e = expression(f)
        yaw, pitch, _ = head_pose(f, ref)
        out["mouth_open"].append(e.mouth_open)
        out["eye_closure"].append(float(np.clip(1 - min(e.eye_open_left, e.eye_open_right) / neutral_eye, 0, 1)))
        out["brow_height"].append(e.brow_height)
        out["yaw"].append(yaw)
        out["pitch"].append(pitch)
    return {k: np.asarray(v) for k, v in out.items()}


def coverage_report(faces_px: np.ndarray, neutral_px: np.ndarray) -> dict:
    """Numbers for coverage.json: histograms, percentiles and warnings."""
    sig = signals(faces_px, neutral_px)
    report: dict = {"frames": int(len(faces_px)), "histograms": {}, "percentiles": {}, "warnings": []}
    for name, (edges, label) in HISTOGRAMS.items():
        counts, _ = np.histogram(np.clip(sig[name], edges[0], edges[-1]), bins=edges)
        report["histograms"][name] = {"label": label, "edges": [round(float(e), 4) for e in edges], "counts": counts.tolist()}
    for name, v in sig.items():
        report["percentiles"][name] = {p: round(float(np.percentile(v, q)), 4) for p, q in (("p1", 1), ("p50", 50), ("p99", 99))}
    measured = {
        "mouth_open": float(np.percentile(sig["mouth_open"], 99)),
        "eye_closure": float(np.percentile(sig["eye_closure"], 99.5)),
        "yaw_span": float(np.percentile(sig["yaw"], 99) - np.percentile(sig["yaw"], 1)),
        "pitch_span": float(np.percentile(sig["pitch"], 99) - np.percentile(sig["pitch"], 1)),
    }
    report["ranges"] = {k: round(v, 4) for k, v in measured.items()}
    for key, want, _, msg in CHECKS:
        if measured[key] < want:
            report["warnings"].append(msg.format(v=measured[key]))
    return report


def save_coverage_png(report: dict, path: Path) -> None:
    """Four histograms in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for ax, (name, h) in zip(axes, report["histograms"].items()):
        edges = np.asarray(h["edges"])
        ax.bar(edges[:-1], h["counts"], width=np.diff(edges), align="edge", color="#4a7ab5", edgecolor="white")
        ax.set_title(h["label"], fontsize=9)
        ax.set_ylabel("frames")
    n_warn = len(report["warnings"])
    fig.suptitle(f"Dataset coverage: {report['frames']} frames, {n_warn} warning{'s' if n_warn != 1 else ''}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
