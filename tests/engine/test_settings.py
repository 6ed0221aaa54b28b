"""minicnn/engine/settings.py: five environment variables, one policy.

Each setting: a good value in the environment is used, a value set in code wins over it, and
a bad value in any of them is refused at the first pass (not at import) with the same words,
from the environment or from code; the command line prints those words as one line, exit 2.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minicnn._checks import SettingError
from minicnn.engine import settings

ROOT = Path(__file__).resolve().parents[2]

# name: (variable, a good value and what get() gives for it, a bad value, the valid values)
CASES = {
    "kernels": ("MINICNN_KERNELS", ("reference", "reference"), "cuda", "fast or reference"),
    "num_threads": ("MINICNN_NUM_THREADS", ("3", 3), "two", "a whole number >= 1"),
    "winograd": ("MINICNN_WINOGRAD", ("off", "off"), "8", "4, 2 or off"),
    "spin_us": ("MINICNN_SPIN_US", ("250", 250), "-5", "a whole number of microseconds >= 0"),
    "tune_malloc": ("MINICNN_TUNE_MALLOC", ("0", "0"), "no", "1 or 0"),
}


def run(code, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MINICNN_")}
    environ.update(PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environ, timeout=300)


def test_every_setting_is_in_the_table():
    assert set(CASES) == set(settings.SETTINGS)
    for name, (variable, _, _, valid) in CASES.items():
        assert settings.SETTINGS[name].variable == variable
        assert settings.SETTINGS[name].valid == valid


@pytest.mark.parametrize("name", CASES)
def test_a_good_environment_value_is_used_and_code_wins(name):
    variable, (text, value), _, _ = CASES[name]
    other = {"kernels": "fast", "num_threads": 1, "winograd": "2", "spin_us": 0,
             "tune_malloc": "1"}[name]
    result = run("from minicnn.engine import settings\n"
                 f"print(repr(settings.get({name!r})))\n"
                 f"settings.set({name!r}, {other!r})\n"
                 f"print(repr(settings.get({name!r})))", **{variable: text})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [repr(value), repr(other)]


@pytest.mark.parametrize("name", CASES)
def test_a_bad_value_is_refused_at_the_first_pass_in_the_same_words(name):
    """``import minicnn`` goes through; the first forward pass raises SettingError, whichever
    setting is wrong (also one this pass would not use); setting it in code fixes it."""
    variable, _, bad, valid = CASES[name]
    message = f"{variable} must be {valid}, got {bad!r}"
    good = {"kernels": "reference", "num_threads": 1, "winograd": "4", "spin_us": 0,
            "tune_malloc": "1"}[name]
    result = run("import numpy as np, minicnn\n"
                 "from minicnn.engine import settings\n"
                 "m = minicnn.Sequential([minicnn.Conv2d(1, 1, 3), minicnn.ReLU()])\n"
                 "x = np.ones((1, 1, 4, 4), np.float32)\n"
                 "try:\n    m(x)\nexcept minicnn._checks.SettingError as e:\n    print(e)\n"
                 f"settings.set({name!r}, {good!r})\n"
                 "print(m(x).shape)", **{variable: bad})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [message, "(1, 1, 2, 2)"]
    with pytest.raises(SettingError) as refused:
        settings.SETTINGS[name].check(bad)
    assert str(refused.value) == message  # from code: the same words


@pytest.mark.parametrize("name", CASES)
def test_the_command_line_reports_a_bad_setting_in_one_line(name, tmp_path):
    variable, _, bad, valid = CASES[name]
    sample = ROOT / "minicnn" / "io" / "data" / "samples" / "test00000_ankle-boot.png"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MINICNN_")}
    environ.update(PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   **{variable: bad})
    result = subprocess.run([sys.executable, "-m", "minicnn", "saliency", str(sample), "--out",
                             str(tmp_path / "out")], capture_output=True, text=True,
                            env=environ, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"minicnn: error: {variable} must be {valid}, "
                                          f"got {bad!r}"]
    assert not any((tmp_path / "out").glob("*"))


def test_set_checks_its_value_and_an_unknown_name_lists_the_settings():
    with pytest.raises(SettingError, match=r"MINICNN_NUM_THREADS must be a whole number >= 1, "
                                           r"got 0"):
        settings.set("num_threads", 0)
    with pytest.raises(SettingError, match=r"got 2.0"):
        settings.set_num_threads(2.0)
    with pytest.raises(SettingError, match=r"got True"):
        settings.set("num_threads", True)
    with pytest.raises(KeyError, match=r"unknown setting 'threads'; the settings are kernels, "):
        settings.get("threads")


def test_use_kernels_restores_the_previous_choice(engine_setting):
    import minicnn
    from minicnn.engine import kernels
    engine_setting("kernels", "fast")
    with minicnn.use_kernels("reference"):
        assert kernels.active_name() == "reference"
        with minicnn.use_kernels("fast"):
            assert kernels.active_name() == "fast"
        assert kernels.active_name() == "reference"
    assert kernels.active_name() == "fast"


def test_importing_minicnn_changes_nothing_process_wide():
    """No setting is read and malloc is not tuned by ``import minicnn`` (nor by a pass)."""
    result = run("import sys, minicnn\n"
                 "from minicnn.engine import settings\n"
                 "print(settings._environment is None, 'numba' in sys.modules)\n",
                 MINICNN_WINOGRAD="8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
