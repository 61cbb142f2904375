"""The ``Engine`` contract, for every engine in the registry that can run here.

Each engine takes the model's own (H, W, 3) uint8 sketch and returns a (H, W, 3)
uint8 photo that agrees with the torch-cpu reference within ``TOLERANCE`` for its
precision; it refuses other inputs. Engines that cannot run on this machine (no GPU,
no CUDA build of ONNX Runtime) are skipped with the engine's own reason.
"""
from __future__ import annotations

import numpy as np
import pytest

from live.engines import ENGINES, TOLERANCE, EngineError, Engine, create_engine
from models.artifact import load_model_dir
from models.config import LiveConfig
from models.sketch import render_sketch


def sketches(model, n=3):
    c = model.contract
    rng = np.random.default_rng(0)
    for _ in range(n):
        yield render_sketch(c.framing.apply(c.neutral_px) + rng.normal(0, 1.0, (478, 3)).astype(np.float32), c.sketch)


@pytest.fixture(scope="module")
def reference(tiny_model):
    return create_engine(load_model_dir(tiny_model), "torch-cpu")


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_keeps_the_contract(name, tiny_model, reference):
    model = load_model_dir(tiny_model)
    try:
        engine = create_engine(model, name)
    except EngineError as e:
        pytest.skip(f"{name} cannot run here: {e.line()}")
    spec = model.contract.sketch
    assert isinstance(engine, Engine) and engine.name == name
    assert engine.shape == (spec.height, spec.width, 3)
    for sketch in sketches(model):
        out = engine.infer(sketch)
        assert out.shape == engine.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - reference.infer(sketch).astype(int)).mean() <= TOLERANCE[engine.precision]
    with pytest.raises(ValueError, match="uint8"):
        engine.infer(np.zeros((10, 10, 3), np.uint8))
    engine.close()


def test_the_setting_and_the_registry_name_the_same_engines():
    import dataclasses

    choices = dict((f.name, f.metadata["choices"]) for f in dataclasses.fields(LiveConfig))["engine"]
    assert set(choices) == {"auto"} | set(ENGINES)


def test_auto_picks_the_first_engine_that_runs_here_and_says_why_it_skipped_the_others(tiny_model):
    from live.engines import AUTO_ORDER

    model = load_model_dir(tiny_model)
    lines = []
    engine = create_engine(model, "auto", log=lines.append)
    runnable = []
    for name in AUTO_ORDER:
        try:
            create_engine(model, name)
            runnable.append(name)
        except EngineError:
            continue
    assert engine.name == runnable[0]
    skipped = AUTO_ORDER[: AUTO_ORDER.index(engine.name)]
    if skipped:
        assert "skipped" in lines[0] and all(name in lines[0] for name in skipped)
    with pytest.raises(EngineError, match="unknown engine"):
        create_engine(model, "tensorflow")


def test_an_older_export_is_advised_and_a_new_one_draws_the_same_faces(puppet_dataset, tmp_path):
    """A "resize" model whose ONNX an earlier version wrote (nearest x2 + 3x3 conv in the
    graph, no inference-form stamp) runs, and live says that `reenact export` would speed
    it up; re-exported, the advice goes and the faces stay the same."""
    import onnx
    import torch

    from models.artifact import load_generator, read_model_json, write_model_json
    from models.config import ModelConfig, TrainConfig
    from training.export import _onnx_export, export
    from training.train import train

    out = tmp_path / "m"
    cfg = TrainConfig(steps=2, batch_size=2, ndf=8, val_frames=2, checkpoint_every=1000, preview_every=1000, val_every=1000)
    train(puppet_dataset, out, model=ModelConfig(size=64, depth=6, ngf=8, upsample="resize"), cfg=cfg, progress=False, log=lambda s: None)
    export(out, log=lambda s: None)
    model = load_model_dir(out)
    old = out / "generator_fp32.onnx"  # as an earlier version wrote it: the trained graph itself, the old stamps
    props = {p.key: p.value for p in onnx.load(str(old)).metadata_props if p.key != "reenact.inference_form"}
    g = load_generator(model)
    for block in g.up:  # the plain nearest + conv form that earlier versions traced
        block[1] = torch.nn.Sequential(*block[1])
    _onnx_export(g, torch.zeros(1, 3, 64, 64), old)
    m = onnx.load(str(old))
    assert "Resize" in {n.op_type for n in m.graph.node}
    for k, v in props.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(old))
    meta = read_model_json(out)
    write_model_json(out, {k: v for k, v in meta.items() if k not in ("files", "format", "version")}, sorted(meta["files"]))

    lines: list[str] = []
    before = create_engine(load_model_dir(out), "ort-cpu", log=lines.append)
    assert any("exported by an earlier reenact" in line and f"reenact export {out}" in line for line in lines)
    export(out, log=lambda s: None)
    lines.clear()
    after = create_engine(load_model_dir(out), "ort-cpu", log=lines.append)
    assert not any("earlier reenact" in line for line in lines)
    assert "Resize" not in {n.op_type for n in onnx.load(str(out / "generator_fp32.onnx")).graph.node}
    assert "MatMul" not in {n.op_type for n in onnx.load(str(out / "generator_fp16.onnx")).graph.node}  # its weights stored, not rebuilt
    for sketch in sketches(model):
        a, b = before.infer(sketch).astype(int), after.infer(sketch).astype(int)
        assert np.abs(a - b).max() <= 1
