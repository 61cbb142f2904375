"""Files: atomic writes, hashing, and names confined to their own directory.

Every file reenact writes that a later run reads (checkpoints, model.json, caches) goes
through ``atomic_path``: it is written under a hidden temporary name beside its final
place, flushed to disk, and renamed into place only when complete, so a crash, a full
disk or Ctrl-C never leaves a half-written file under the real name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Iterator


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over
    ``path``; on any error (or Ctrl-C) remove it and leave ``path`` as it was.
    ``suffix`` keeps an extension writers need (``np.savez`` adds ``.npz`` otherwise)."""
    final = Path(path)
    tmp = final.with_name(f".{final.name}{suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def confined(root: str | os.PathLike, name: str) -> Path:
    """``root / name`` for a file name read from an untrusted record (model.json,
    manifest.json). Raises ValueError when the name is absolute, climbs out with
    ``..``, or is not a plain relative path."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise ValueError(f"file name {name!r} is not a plain relative path")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or name.startswith("~"):
        raise ValueError(f"file name {name!r} points outside its directory")
    return Path(root) / pure


def read_record(path: Path, *, error: type[Exception], kind: str, version: int, keys: dict[str, type], hint: str = "") -> dict:
    """A reenact JSON record (model.json, manifest.json) from an untrusted file: an
    object whose ``format`` is ``kind`` and ``version`` is ``version``, with each of
    ``keys`` present as its JSON type. Anything else raises ``error`` naming the file
    (``hint``, e.g. "; rebuild the dataset", is added to the message)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path} is corrupt: {e}{hint}") from None
    if not isinstance(record, dict):
        raise error(f"{path} is corrupt: it holds a JSON {type(record).__name__}, not an object{hint}")
    if record.get("format") != kind:
        raise error(f"{path} is not a {kind} record (format {record.get('format')!r}){hint}")
    if record.get("version") != version:
        raise error(f"{path} has format version {record.get('version')!r}; this reenact reads version {version}{hint}")
    for key, typ in keys.items():
        if not isinstance(record.get(key), typ):
            raise error(f"{path} is damaged: {key!r} is missing or not a JSON {typ.__name__}{hint}")
    return record


def make_dir(path: str | os.PathLike, *, error: type[Exception], what: str) -> Path:
    """Create ``path`` (and its parents) for writing ``what`` into, or raise ``error``
    saying why the OS refused (a path through a regular file, no permission, ...)."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"cannot write {what} to {str(p)!r}: {e.strerror} ({e.filename})") from None
    return p
