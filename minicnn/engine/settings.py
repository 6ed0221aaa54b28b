"""The engine's settings, read and checked in one place.

Five environment variables tune how minicnn computes, never what it computes:

    variable              values                      default          in code
    MINICNN_KERNELS       fast, reference             fast             minicnn.use_kernels(name)
    MINICNN_NUM_THREADS   a whole number >= 1         the CPUs usable  set_num_threads(n)
    MINICNN_WINOGRAD      4, 2, off                   4                set("winograd", "2")
    MINICNN_SPIN_US       microseconds >= 0           1000             set("spin_us", 0)
    MINICNN_TUNE_MALLOC   1, 0                        1                set("tune_malloc", "0")

- ``MINICNN_KERNELS``: the readable NumPy kernels or the compiled ones (``kernels/``);
- ``MINICNN_NUM_THREADS``: the threads of minicnn's own pool (``kernels/fast/threads.py``);
- ``MINICNN_WINOGRAD``: which Winograd algorithm 3x3 stride-1 convolutions use: F(4x4, 3x3)
  where its tiles fit, F(2x2, 3x3) only (less float32 rounding), or none (im2col);
- ``MINICNN_SPIN_US``: how long a pool thread watches for work before it sleeps
  (``kernels/fast/spin.py``; always 0 on Windows);
- ``MINICNN_TUNE_MALLOC``: whether ``tune_malloc()`` (called by the ``minicnn`` command and
  the benchmarks, never by ``import minicnn``) may change glibc's malloc thresholds
  (``kernels/fast/allocator.py``).

One policy for all five: the environment is read when the engine first needs a setting (the
first pass), not at import, and a bad value in any of the five is then a ``SettingError``
naming the variable and its valid values, the same words whether it came from the
environment or from code (the command line prints it as one line, exit 2). A value set in
code wins over the environment. Importing this module changes nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from minicnn._checks import SettingError

__all__ = ["SettingError", "SETTINGS", "get", "set", "explicit", "reset", "set_num_threads"]


def _choice(*values):
    def parse(value):
        text = str(value)
        if text not in values:
            raise ValueError
        return text
    return parse


def _whole(minimum):
    def parse(value):
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.isdigit():
            number = int(value)
        else:
            raise ValueError
        if number < minimum:
            raise ValueError
        return number
    return parse


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Setting:
    """One setting: its environment variable, what it accepts (in words, for the message),
    its default, and how a value is parsed (raising ValueError if it is not valid)."""

    variable: str
    valid: str
    default: Callable[[], object]
    parse: Callable[[object], object]

    def check(self, value):
        try:
            return self.parse(value)
        except (ValueError, TypeError):
            raise SettingError(f"{self.variable} must be {self.valid}, got {value!r}") from None


SETTINGS = {
    "kernels": Setting("MINICNN_KERNELS", "fast or reference", lambda: "fast",
                       _choice("fast", "reference")),
    "num_threads": Setting("MINICNN_NUM_THREADS", "a whole number >= 1", _usable_cpus,
                           _whole(1)),
    "winograd": Setting("MINICNN_WINOGRAD", "4, 2 or off", lambda: "4", _choice("4", "2", "off")),
    "spin_us": Setting("MINICNN_SPIN_US", "a whole number of microseconds >= 0",
                       lambda: 1000, _whole(0)),
    "tune_malloc": Setting("MINICNN_TUNE_MALLOC", "1 or 0", lambda: "1", _choice("1", "0")),
}

_in_code: dict = {}  # name -> value given to set(), which wins over the environment
_environment: dict | None = None  # name -> value, read at the first get()
_errors: dict = {}  # name -> the SettingError of a bad environment value
# name -> the value in force (code over environment), made when no setting is bad; get() is
# called a hundred times per pass, so its usual path is one dict lookup
_effective: dict | None = None


def _setting(name) -> Setting:
    if name not in SETTINGS:
        raise KeyError(f"unknown setting {name!r}; the settings are {', '.join(SETTINGS)}")
    return SETTINGS[name]


def _read_environment() -> None:
    """Every setting's environment value, parsed, or the SettingError it gives."""
    global _environment, _errors
    values, errors = {}, {}
    for name, setting in SETTINGS.items():
        text = os.environ.get(setting.variable)
        try:
            values[name] = setting.default() if text is None else setting.check(text)
        except SettingError as error:
            errors[name] = error
    _environment, _errors = values, errors


def get(name: str):
    """The value of setting ``name``: set in code, else from its environment variable, else
    the default. The environment is read at the first ``get`` of any setting, and a bad value
    in ANY variable not overridden in code is a SettingError from every ``get`` until it is
    fixed: the first pass reports a typo even in a setting this machine never uses."""
    effective = _effective if _effective is not None else _in_force()
    if name not in effective:
        _setting(name)  # an unknown name is a KeyError that lists the settings
    return effective[name]


def _in_force() -> dict:
    """Every setting's value in force, kept for the next get(); the first bad environment
    value that code has not overridden is raised instead (and nothing is kept)."""
    global _effective
    if _environment is None:
        _read_environment()
    for other, error in _errors.items():
        if other not in _in_code:
            raise error
    _effective = {**_environment, **_in_code}
    return _effective


def set(name: str, value) -> None:  # noqa: A001  (settings.set reads as what it does)
    """Use ``value`` for setting ``name`` from now on, whatever the environment says;
    SettingError (naming the variable and its valid values) if it is not valid."""
    global _effective
    _in_code[name] = _setting(name).check(value)
    _effective = None


def explicit(name: str):
    """The value set in code for setting ``name`` (``set``), or None if there is none."""
    _setting(name)  # an unknown name is a KeyError, as everywhere here
    return _in_code.get(name)


def reset(name: str | None = None) -> None:
    """Forget the value set in code for one setting (or for all), and read the environment
    again at the next use."""
    global _environment, _effective
    if name is None:
        _in_code.clear()
    else:
        _setting(name)  # an unknown name is a KeyError
        _in_code.pop(name, None)
    _environment = _effective = None


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (an int >= 1) from the next kernel call on; 1 runs every kernel in
    the calling thread (a Dask worker, one of several processes on a machine, sets 1)."""
    set("num_threads", n)
