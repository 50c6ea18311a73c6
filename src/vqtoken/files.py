"""File helpers shared by the package: atomic writes, streamed sha256, local paths told from Hub ids."""

import errno
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
    any point leaves `path` as it was and no temporary file behind. The file gets the permissions a plain `open` would
    give it (0666 less the umask), and an `OSError` of the file system names `path`, not the temporary file.
    """
    path = Path(path)
    temporary = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)) from None
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    except BaseException:
        _remove(temporary)
        raise
    return path


def _umask() -> int:
    """The process umask (reading it means setting it: it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(temporary: str | None):
    if temporary is not None:
        Path(temporary).unlink(missing_ok=True)


def looks_like_local_path(name_or_path: str) -> bool:
    """Whether `name_or_path` names a local file or folder rather than a Hub id (`org/name`): it exists, starts with
    `.`, `/` or `~`, holds a backslash, or has more than one `/`."""
    return (
        Path(name_or_path).expanduser().exists()
        or name_or_path.startswith((".", "/", "~"))
        or "\\" in name_or_path
        or name_or_path.count("/") > 1
    )
