"""``reenact``: parse the command line, read the settings once, run one command, and
turn every error a user can cause into one line and its exit code."""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

from models.config import Config, load_config, read_panel_settings
from models.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ReenactError

DEFAULT_CONFIG = "config.toml"


def settings(args: argparse.Namespace, preset: str | None = None) -> Config:
    """``--config`` (default ./config.toml when present, else built-in defaults), a
    model preset (``preset``, else ``--preset`` where the command has one; "auto" is
    resolved by the command itself), what the control panel kept (its settings file,
    beside the config file), then the ``--set`` overrides. Sets ``args.panel_settings``
    to (that file, the values it gave)."""
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    preset = preset or getattr(args, "preset", None)
    preset = None if preset == "auto" else preset
    cfg = load_config(path, args.set or [], preset=preset)
    panel_file = Path(path).parent / cfg.panel.settings_file if path else Path(cfg.panel.settings_file)
    kept = read_panel_settings(panel_file)
    args.panel_settings = (panel_file, kept)
    return load_config(path, args.set or [], preset=preset, panel_settings=kept) if kept else cfg


def cmd_config(args: argparse.Namespace, cfg: Config) -> int:
    for section in dataclasses.fields(cfg):
        print(f"[{section.name}]")
        for k, v in dataclasses.asdict(getattr(cfg, section.name)).items():
            print(f"{k} = {v!r}".replace("True", "true").replace("False", "false").replace("'", '"'))
        print()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from live import commands as live_commands
    from reenact import demo, eval as evaluation
    from training import commands as training_commands

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help=f"settings file (default: ./{DEFAULT_CONFIG} if present, else built-in defaults)")
    common.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting; repeatable")
    common.add_argument("--quiet", action="store_true", help="no progress bars")

    p = argparse.ArgumentParser(prog="reenact", description="Real-time face re-enactment: drive a target's face from your webcam.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    training_commands.register(sub, common)
    live_commands.register(sub, common)
    demo.register(sub, common)
    evaluation.register(sub, common)
    c = sub.add_parser("config", parents=[common], help="print the effective settings")
    c.set_defaults(func=cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every error a user can cause ends here as one line on stderr and
    the exit code of its family (models/errors.py; the README's table)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # OpenCV's own warnings; reenact reports what matters
    try:
        args = build_parser().parse_args(argv)  # inside: Ctrl-C while the libraries load is 130 too
        args.settings_for = lambda preset: settings(args, preset)  # for a command that resolves --preset auto itself
        return args.func(args, settings(args))
    except KeyboardInterrupt:
        print("reenact: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ReenactError as e:
        print(f"reenact: {e.family}: {e.line()}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # the OS refused a file: a full disk, a path through a regular file, permissions
        where = f"{e.filename}: " if e.filename else ""
        print(f"reenact: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED


def run() -> None:
    """The console entry point: ``main``, then exit with its code. A Ctrl-C that lands
    after the command has finished (while Python tears down the libraries) leaves the
    command's code; one that escapes the command (pressed again as an interrupted command
    returns) gives 130. Never a death by SIGINT, which a caller cannot tell from a crash."""
    try:
        code = main()
    except KeyboardInterrupt:  # pressed again while the first Ctrl-C was being answered
        code = EXIT_INTERRUPTED
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # raises a Ctrl-C still pending: the command has ended already
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    run()
