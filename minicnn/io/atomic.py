"""Write files whole or not at all, and check an output path before any work is done.

- ``atomic_write(path, write)``: ``write`` fills a temporary file beside ``path``, which is
  then renamed into place; ``atomic_write_all`` does it for several files at once, renaming
  only when every one of them is written (a figure and its map appear together or not at
  all). A crash, Ctrl-C, SIGTERM (the command line turns it into an exception), a full disk
  or any other write error removes the temporary files and leaves the previous files
  untouched (rename is atomic on one file system; the data is not fsynced, so a power cut
  may still lose it). A write error is a ``WriteError`` naming the file.
- ``check_output_dir`` / ``check_output_file``: is the path somewhere outputs can go (not a
  file where a folder is wanted, not under a file, not in a read-only folder, the right
  suffix)? ``OutputPathError`` if not, so that a command can refuse before it computes.

Temporary files get the permissions a plain ``open(path, "w")`` would give (0666 minus the
umask), not mkstemp's private 0600.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_all", "check_output_dir", "check_output_file",
           "WriteError", "OutputPathError"]


class WriteError(OSError):
    """An output could not be written (a full disk, a file-size limit, an I/O error)."""


class OutputPathError(ValueError):
    """An output path that cannot be used: a file where a folder is wanted, a read-only
    folder, the wrong suffix."""


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

    The temporary name keeps `path`'s suffix, for writers that pick a format by it.
    Raises WriteError naming `path` when the writing fails with an OSError."""
    return atomic_write_all([(path, write)])[0]


def atomic_write_all(writes) -> list[Path]:
    """``writes``: [(path, write), ...]. Every ``write(tmp_path)`` runs first, each into its
    own temporary file; only then are they all renamed into place. Returns the paths."""
    temps = []  # (temporary, final)
    try:
        for path, write in writes:
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=path.suffix,
                                           dir=path.parent)
                os.close(fd)
                temps.append((tmp, path))
                os.chmod(tmp, _FILE_MODE)
                write(tmp)
            except OSError as e:
                raise _write_error(path, e) from e
        for tmp, path in temps:
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise _write_error(path, e) from e
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [path for _, path in temps]


def _write_error(path: Path, error: OSError) -> WriteError:
    if isinstance(error, WriteError):
        return error
    reason = error.strerror or str(error) or type(error).__name__
    wrapped = WriteError(f"cannot write {path}: {reason}")  # one argument: str() is the message
    wrapped.errno = error.errno
    return wrapped


def check_output_dir(path) -> Path:
    """``path`` as a folder that outputs can be written into; it need not exist yet.

    OutputPathError if it is a file, lies under a file, or the nearest existing folder on
    its way is not writable."""
    path = Path(path)
    _check_place(path, path)
    return path


def check_output_file(path, suffix: str | None = None) -> Path:
    """``path`` as a file that can be written (replacing any file there), with ``suffix``
    if given. OutputPathError otherwise."""
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise OutputPathError(f"{path}: the output file must end in {suffix}")
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder, not a file")
    _check_place(path.parent, path)
    return path


def _check_place(folder: Path, named: Path) -> None:
    """The nearest existing folder on the way to ``folder`` must be a writable folder."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{named}: is a file, not a folder" if existing == named else
                              f"{named}: cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{named}: cannot be written: {existing} is not writable "
                              f"(permission denied)")
