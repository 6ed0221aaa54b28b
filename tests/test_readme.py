"""README.md opens with the two commands, .ci/run runs exactly the test one, and every relative
link in README.md and docs/*.md leads somewhere: to a file that exists and, when the link
names a section (``file.md#section``), to a heading of that file."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MANUALS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


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


def without_code(text: str) -> str:
    """The Markdown text with fenced blocks and inline code removed: a ``](`` in code is
    not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def links(text: str) -> list[str]:
    """The targets of every inline link and image, ``[text](target)``/``![alt](target)``."""
    return re.findall(r"\]\(([^)\s]+)\)", without_code(text))


def anchors(path: Path) -> set[str]:
    """The section anchors GitHub makes for the headings of ``path``: lower case, punctuation
    dropped, spaces to hyphens, and -1, -2, ... after a repeated one."""
    seen: dict[str, int] = {}
    for line in without_code(path.read_text()).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            if count:
                seen[f"{slug}-{count}"] = 1
    return set(seen)


def test_the_link_checker_reads_what_it_should():
    text = "[a](x.md) ![b](../y/z.png) `[c](not.md)` [d](https://e.org)\n```\n[f](g.md)\n```\n"
    assert links(text) == ["x.md", "../y/z.png", "https://e.org"]


@pytest.mark.parametrize("manual", MANUALS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_something_that_exists(manual):
    broken = []
    for target in links(manual.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (manual.parent / file_part).resolve() if file_part else manual
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading '#{anchor}' in {linked.name}")
    assert not broken, f"{manual.name}: " + "; ".join(broken)
