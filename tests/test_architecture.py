"""The architecture (docs/ARCHITECTURE.md) as checks that fail when it erodes:

* the layers and the absence of import cycles (import-linter's contracts in
  pyproject.toml): models imports neither side, training and live never import each
  other, only the entry package imports both;
* functions stay readable: at most 60 lines (argument tables excepted), and code marked
  ``@per_frame`` (it runs once per live frame) at most 40;
* below the command modules, no function takes the whole ``Config``: each component
  gets its own section;
* the pipeline holds no UI state: no view mode, gain hotkey, badge or watermark.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "training", "live")
MAX_LINES, MAX_PER_FRAME = 60, 40
DECLARATIVE = {"register", "build_parser"}  # argument tables: one add_argument per line, nothing to split


def functions():
    """(path, qualified name, node) of every function in the three packages."""
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).glob("*.py")):
            tree = ast.parse(path.read_text())
            stack = [(tree, "")]
            while stack:
                node, prefix = stack.pop()
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        yield path.relative_to(ROOT), f"{prefix}{child.name}", child
                        stack.append((child, f"{prefix}{child.name}."))
                    elif isinstance(child, ast.ClassDef):
                        stack.append((child, f"{prefix}{child.name}."))


def length(node) -> int:
    return node.end_lineno - node.lineno + 1  # from `def` to its last line


def test_import_layers_and_no_cycles():
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def test_functions_are_short():
    long = [f"{p}:{n.lineno} {q} ({length(n)} lines)" for p, q, n in functions()
            if length(n) > MAX_LINES and q.split(".")[-1] not in DECLARATIVE]
    assert not long, "split these:\n" + "\n".join(long)


def test_per_frame_code_is_shorter_still():
    marked = [(p, q, n) for p, q, n in functions() if any(getattr(d, "id", None) == "per_frame" for d in n.decorator_list)]
    assert len(marked) >= 20  # the live path is marked (pipeline, loop, output, engines, sinks, sketch, retarget, ...)
    long = [f"{p}:{n.lineno} {q} ({length(n)} lines)" for p, q, n in marked if length(n) > MAX_PER_FRAME]
    assert not long, "per-frame code to split:\n" + "\n".join(long)


def test_only_command_modules_take_the_whole_config():
    takers = []
    for path, name, node in functions():
        if path.name == "commands.py" or path == Path("models/config.py"):
            continue
        for arg in node.args.args + node.args.kwonlyargs:
            if arg.annotation is not None and ast.unparse(arg.annotation).strip("'\"") == "Config":
                takers.append(f"{path}:{node.lineno} {name}({arg.arg})")
    assert not takers, "pass these their own sections:\n" + "\n".join(takers)


def test_the_pipeline_holds_no_ui_state(tiny_model):
    from live.pipeline import Pipeline
    from models.artifact import load_model_dir
    from models.config import LandmarksConfig, LiveConfig
    from tests.fakes import FakeClock, FakeEngine, ScriptedDetector, puppet_script

    model = load_model_dir(tiny_model)
    clock = FakeClock()
    spec = model.contract.sketch
    pipe = Pipeline(model, FakeEngine((spec.height, spec.width, 3), clock), ScriptedDetector(puppet_script(), (160, 120), clock),
                    live=LiveConfig(), landmarks=LandmarksConfig(), out_size=(160, 90), clock=clock)
    held = set(vars(pipe))
    assert not {"mode", "gain", "badge", "watermark", "_view"} & held, held
    assert not any(hasattr(Pipeline, name) for name in ("handle_key", "set_gain", "overlay_lines", "_render_view", "_disclose"))


@pytest.mark.parametrize("module", ["live.loop", "live.pipeline"])
def test_no_controls_in_the_per_frame_modules(module):
    """Keys and the overlay live in live/controls.py, not in the loop or the pipeline."""
    import importlib

    source = Path(importlib.import_module(module).__file__).read_text()
    assert "def handle_key" not in source and "def overlay_lines" not in source
