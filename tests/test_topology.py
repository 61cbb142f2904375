"""models/data/topology.json must match mediapipe's own connection lists, so the sketch
cannot drift from what Face Mesh means by each index."""
from __future__ import annotations

import numpy as np

from models import topology as T


def test_topology_matches_mediapipe():
    from mediapipe.python.solutions import face_mesh_connections as c

    pairs = {
        "face_oval": c.FACEMESH_FACE_OVAL, "left_eye": c.FACEMESH_LEFT_EYE, "right_eye": c.FACEMESH_RIGHT_EYE,
        "left_brow": c.FACEMESH_LEFT_EYEBROW, "right_brow": c.FACEMESH_RIGHT_EYEBROW, "nose": c.FACEMESH_NOSE,
        "lips": c.FACEMESH_LIPS, "left_iris": c.FACEMESH_LEFT_IRIS, "right_iris": c.FACEMESH_RIGHT_IRIS,
    }
    for name, conn in pairs.items():
        assert {tuple(e) for e in T.edges(name).tolist()} == {tuple(e) for e in conn}, name
    tess = {frozenset(e) for e in c.FACEMESH_TESSELATION}
    for a, b, d in T.triangles()[:200]:
        assert {frozenset((a, b)), frozenset((b, d)), frozenset((a, d))} <= tess


def test_loops_are_closed_contours_of_their_edges():
    for name, edge_name in (("left_eye", "left_eye"), ("face_oval", "face_oval")):
        lp = T.loop(name)
        edges = {frozenset(e) for e in T.edges(edge_name).tolist()}
        assert {frozenset((int(a), int(b))) for a, b in zip(lp, np.roll(lp, -1))} == edges


def test_regions_partition_the_landmarks():
    regions = T.region_indices()
    allidx = np.concatenate(list(regions.values()))
    assert sorted(allidx.tolist()) == list(range(478))
    assert T.MOUTH_RIGHT in regions["mouth"] and T.RIGHT_IRIS_CENTER in regions["eyes"]
