"""The one way this package writes a file or folder that another stage (or a resumed run) reads:
write beside it, then `os.replace`. A crash mid-write leaves the old version or none, never a
truncated one that a later stage would trust."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

FAULT_ENV = "LEADER_FAULT_WRITE"  # fault injection (scripts/chaos_study.py): writes to matching paths fail


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to (for writers that want a path: torch.save,
    to_parquet...); it replaces `path` when the block ends without error, and is removed otherwise.
    A full disk surfaces as the OSError naming the file."""
    path = Path(path)
    pattern = os.environ.get(FAULT_ENV)
    if pattern and pattern in str(path):
        raise OSError(errno.ENOSPC, f"No space left on device (injected by {FAULT_ENV})", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_with(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    """`write(f)` into a binary file handle, flushed to disk, then moved over `path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_with(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_parquet(path: str | Path, df, **kwargs) -> Path:
    """A pandas DataFrame as parquet (`kwargs` go to DataFrame.to_parquet)."""
    return write_with(path, lambda f: df.to_parquet(f, **kwargs))


def replace_folder(folder: str | Path, build: Callable[[Path], object]) -> Path:
    """`build(tmp)` fills a fresh folder beside `folder`, which is then swapped in: readers see the
    old folder or the complete new one, never a half-written one."""
    folder = Path(folder)
    tmp, old = folder.parent / f"{folder.name}.tmp", folder.parent / f"{folder.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.replace(old)
    tmp.replace(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder
