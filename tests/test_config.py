from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from models.config import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_toml_lists_every_default():
    shipped = load_config(ROOT / "config.toml")
    assert shipped == Config()
    text = (ROOT / "config.toml").read_text()
    for section in dataclasses.fields(Config):
        assert f"[{section.name}]" in text
        for f in dataclasses.fields(section.type if isinstance(section.type, type) else type(getattr(shipped, section.name))):
            assert f"\n{f.name} = " in text, f"config.toml lacks {section.name}.{f.name}"


FLOAT_KEYS = [f"{section.name}.{f.name}" for section in dataclasses.fields(Config)
              for f in dataclasses.fields(section.default_factory()) if isinstance(getattr(section.default_factory(), f.name), float)]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_key_refuses_nan_and_infinities(key, value):
    """NaN passes every range comparison (all are false), so it needs its own check."""
    with pytest.raises(ConfigError, match=rf"{key} = .*must be a finite number"):
        load_config(None, [f"{key}={value}"])


def test_badge_text_must_be_drawable():
    for text, message in (("' '", "must not be empty"), ("'Künstlich'", "ASCII"), ("'" + "x" * 41 + "'", "at most 40")):
        with pytest.raises(ConfigError, match=rf"output\.badge_text = .*{message}"):
            load_config(None, [f"output.badge_text={text}"])
    assert load_config(None, ["output.badge_text='Synthetic video'"]).output.badge_text == "Synthetic video"


@pytest.mark.parametrize(
    "override, message",
    [
        ("live.budget_ms=abc", r"live\.budget_ms = 'abc': must be a number"),
        ("live.budget_ms=0", r"live\.budget_ms = 0\.0: must be between 1\.0 and 1000\.0"),
        ("live.bogus=1", r"unknown key live\.bogus"),
        ("nosuch.key=1", r"unknown section \[nosuch\]"),
        ("live.engine='cuda'", r"live\.engine = 'cuda': must be one of 'auto'"),
        ("train.steps=1.5", r"train\.steps = 1\.5: must be an integer"),
        ("capture.mjpg=1", r"capture\.mjpg = 1: must be true or false"),
        ("budget_ms=3", r"expected section\.key=value"),
    ],
)
def test_bad_settings_name_key_value_and_allowed(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_overrides_apply_on_top_of_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[live]\nbudget_ms = 40\n[model]\nngf = 32\n")
    cfg = load_config(f, ["live.budget_ms=25", "model.upsample=resize"])
    assert cfg.live.budget_ms == 25.0 and isinstance(cfg.live.budget_ms, float)
    assert cfg.model.ngf == 32 and cfg.model.upsample == "resize"
    assert cfg.train == Config().train


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[live\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("live = 3\n")
    with pytest.raises(ConfigError, match=r"\[live\] must be a table"):
        load_config(wrong)
