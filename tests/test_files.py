"""Atomic writes: permissions as a plain write gives them, errors that name the user's path."""

import os
import stat

import pytest

from vqtoken.files import write_atomically


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path, umask):
    previous = os.umask(umask)
    try:
        plain = tmp_path / "plain.bin"
        plain.write_bytes(b"data")
        atomic = write_atomically(tmp_path / "atomic.bin", lambda stream: stream.write(b"data"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.bin", "plain.bin"]


def test_a_failed_write_names_the_users_path_and_leaves_nothing(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    target = tmp_path / "a-file" / "out.png"
    with pytest.raises(OSError) as raised:
        write_atomically(target, lambda stream: stream.write(b"data"))
    assert raised.value.filename == str(target) and ".tmp" not in str(raised.value)

    def fail(stream):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left on device") as raised:
        write_atomically(tmp_path / "full.vqt", fail)
    assert raised.value.filename == str(tmp_path / "full.vqt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
