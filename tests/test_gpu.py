"""GPU checks: run only where PyTorch sees CUDA (skipped with a reason elsewhere)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA (none on this machine)")


def test_torch_cuda_engine_matches_the_cpu_reference(tiny_model):
    from live.engines import TOLERANCE, create_engine
    from models.artifact import load_model_dir
    from models.sketch import render_sketch

    model = load_model_dir(tiny_model)
    ref, gpu = create_engine(model, "torch-cpu"), create_engine(model, "torch-cuda")
    c = model.contract
    rng = np.random.default_rng(0)
    for _ in range(3):
        sketch = render_sketch(c.framing.apply(c.neutral_px) + rng.normal(0, 1, (478, 3)).astype(np.float32), c.sketch)
        assert np.abs(gpu.infer(sketch).astype(int) - ref.infer(sketch).astype(int)).mean() <= TOLERANCE["fp16"]


def test_cuda_graph_is_captured_and_replays_new_inputs(tiny_model):
    from live.engines import TorchEngine
    from models.artifact import load_model_dir

    model = load_model_dir(tiny_model)
    eng = TorchEngine(model, device="cuda", cuda_graph=True)
    eng.warmup()
    assert eng._graph is not None
    h, w, _ = eng.shape
    a = eng.infer(np.zeros((h, w, 3), np.uint8)).copy()
    b = eng.infer(np.full((h, w, 3), 255, np.uint8)).copy()
    assert not np.array_equal(a, b)  # the replay read the new input, not a stale one
    eager = TorchEngine(model, device="cuda", cuda_graph=False)
    eager.warmup()
    assert np.abs(eager.infer(np.full((h, w, 3), 255, np.uint8)).astype(int) - b.astype(int)).max() <= 1
