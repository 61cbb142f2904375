"""The errors reenact reports to its user, one family per kind of thing that can be wrong.

Every family derives from ``ReenactError``. The command line catches that one class in
one place, prints ``reenact: <family>: <message>`` as a single line on stderr and exits
with the family's code (the table is in the README):

    0    done
    1    failed; the line says why (dataset, model, source, output and device errors)
    2    usage or config error
    3    ``reenact verify`` found no watermark
    130  interrupted (Ctrl-C or SIGTERM)

A message names the file or device and what is wrong with it. ``fix`` is the command or
setting that repairs it, when there is one (the same fix ``reenact doctor`` prints).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_WATERMARK = 3
EXIT_INTERRUPTED = 130


class ReenactError(Exception):
    """Base of every error a user sees as one line."""

    family = "error"
    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix

    def line(self) -> str:
        """The message (and its fix) folded onto one line."""
        text = one_line(str(self))
        return f"{text} (fix: {one_line(self.fix)})" if self.fix else text


def one_line(text: str) -> str:
    """Fold a multi-line message: lines after a colon continue it, others are joined by '; '."""
    out = ""
    for part in (p.strip() for p in text.splitlines()):
        if not part:
            continue
        out = part if not out else out + (" " if out.endswith(":") else "; ") + part
    return out


class UsageError(ReenactError):
    """The command line asks for something that cannot be done as asked."""

    family = "usage error"
    exit_code = EXIT_USAGE


class ConfigError(ReenactError, ValueError):
    """A bad setting. The message names the key, the value and what is allowed."""

    family = "config error"
    exit_code = EXIT_USAGE


class DatasetError(ReenactError):
    """A dataset (or the videos it is built from) is missing, damaged or unusable."""

    family = "dataset error"


class ModelError(ReenactError):
    """A model directory, checkpoint or export is missing, damaged or does not match."""

    family = "model error"


class SourceError(ReenactError):
    """A frame source (camera, video file) could not be opened or read."""

    family = "source error"


class SinkError(ReenactError):
    """An output (virtual camera, window, recording) could not be opened or failed."""

    family = "output error"


class DeviceError(ReenactError):
    """A device or runtime the machine lacks: GPU engine, audio device."""

    family = "device error"
