"""File helpers shared by the package: atomic writes and streamed sha256."""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20


def hash_stream(digest, stream: BinaryIO, limit: int | None = None):
    """
    Feeds `stream` to `digest` (a `hashlib` object) from its current position to its end, or `limit` bytes at most,
    1 MiB at a time.
    """
    remaining = limit
    while remaining is None or remaining > 0:
        chunk = stream.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
        if not chunk:
            break
        digest.update(chunk)
        if remaining is not None:
            remaining -= len(chunk)
    return digest


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """
    Calls `write(stream)` on a temporary file next to `path`, flushes it to disk and renames it to `path`: a failure at
    any point leaves `path` as it was and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
