"""Derive models/data/topology.json from MediaPipe's Face Mesh connection lists.

Run once by a developer (needs mediapipe). The JSON is committed so that the sketch
renderer and the puppet never import mediapipe, and so that a mediapipe upgrade cannot
silently change the sketch: tests/test_topology.py checks the JSON against mediapipe.
"""
from __future__ import annotations

import json
from pathlib import Path

from mediapipe.python.solutions import face_mesh_connections as c


def ordered_loops(edges: set[tuple[int, int]]) -> list[list[int]]:
    """Split an undirected edge set whose vertices all have degree 2 into ordered cycles."""
    nbrs: dict[int, list[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    assert all(len(v) == 2 for v in nbrs.values()), "not a union of cycles"
    seen: set[int] = set()
    loops = []
    for start in sorted(nbrs):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in nbrs[cur] if n != prev][0] if prev is not None else min(nbrs[cur])
            if nxt == start:
                break
            loop.append(nxt)
            seen.add(nxt)
            prev, cur = cur, nxt
        loops.append(loop)
    return loops


def triangles(edges: set[tuple[int, int]]) -> list[list[int]]:
    nbrs: dict[int, set[int]] = {}
    for a, b in edges:
        nbrs.setdefault(a, set()).add(b)
        nbrs.setdefault(b, set()).add(a)
    tris = set()
    for a, b in edges:
        for x in nbrs[a] & nbrs[b]:
            tris.add(tuple(sorted((a, b, x))))
    return [list(t) for t in sorted(tris)]


def main() -> None:
    def e(s):
        return sorted([list(p) for p in s])

    lips_loops = ordered_loops(set(c.FACEMESH_LIPS))
    # The outer lip loop is the one containing the upper-lip midpoint 0; inner contains 13.
    outer = [l for l in lips_loops if 0 in l][0]
    inner = [l for l in lips_loops if 13 in l][0]
    topo = {
        "source": "mediapipe 0.10.21 face_mesh_connections",
        "num_landmarks": 478,
        "edges": {
            "face_oval": e(c.FACEMESH_FACE_OVAL),
            "left_brow": e(c.FACEMESH_LEFT_EYEBROW),
            "right_brow": e(c.FACEMESH_RIGHT_EYEBROW),
            "left_eye": e(c.FACEMESH_LEFT_EYE),
            "right_eye": e(c.FACEMESH_RIGHT_EYE),
            "left_iris": e(c.FACEMESH_LEFT_IRIS),
            "right_iris": e(c.FACEMESH_RIGHT_IRIS),
            "nose": e(c.FACEMESH_NOSE),
            "lips": e(c.FACEMESH_LIPS),
        },
        "loops": {
            "face_oval": ordered_loops(set(c.FACEMESH_FACE_OVAL))[0],
            "left_eye": ordered_loops(set(c.FACEMESH_LEFT_EYE))[0],
            "right_eye": ordered_loops(set(c.FACEMESH_RIGHT_EYE))[0],
            "outer_lips": outer,
            "inner_lips": inner,
        },
        "triangles": triangles(set(c.FACEMESH_TESSELATION)),
    }
    out = Path(__file__).resolve().parents[1] / "models" / "data" / "topology.json"
    out.write_text(json.dumps(topo, separators=(",", ":")) + "\n")
    print(f"wrote {out}: {len(topo['triangles'])} triangles")


if __name__ == "__main__":
    main()
