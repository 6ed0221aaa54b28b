"""README.md opens with the two commands, and .ci/run runs exactly the test one."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:sh|bash)\n(.*?)\n```", text, flags=re.S)


def test_readme_opens_with_run_and_test_commands():
    commands = readme_commands()
    assert len(commands) >= 2
    assert "minicnn demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    test_command = readme_commands()[1].splitlines()[-1].strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
