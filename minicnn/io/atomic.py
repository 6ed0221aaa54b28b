"""Write a file whole or not at all: into a temporary name beside it, then rename.

A crash or Ctrl-C halfway leaves the user's previous file untouched (rename is atomic on one
file system; the data is not fsynced, so a power cut may still lose it). The temporary file
gets the permissions a plain ``open(path, "w")`` would give (0666 minus the umask), not
mkstemp's private 0600.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def _umask() -> int:
    try:  # Linux shows it without changing it
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)  # elsewhere, reading it means setting it; put it straight back
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` then rename tmp_path to `path`: `path` is whole or untouched.

    The temporary name keeps `path`'s suffix, for writers that pick a format by it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
