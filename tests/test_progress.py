"""minicnn._progress: tqdm bars that write whole lines in a log and redraw in place on a
terminal."""
import io

from minicnn._progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_in_a_log_a_whole_line_per_step_of_the_bar():
    stream = io.StringIO()
    with progress_bar(8, "occlusion", file=stream) as bar:
        for _ in range(8):
            bar.update(1)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 9           # 0/8 and each of the 8 steps (the bar has 20 characters)
    assert lines[0].startswith("occlusion [--------------------] 0/8 ")
    assert lines[4].startswith("occlusion [##########----------] 4/8 ")
    assert lines[-1].startswith("occlusion [####################] 8/8 ")
    assert "<" in lines[-1]          # elapsed < remaining time


def test_in_a_log_at_most_one_line_per_character_of_the_bar():
    stream = io.StringIO()
    with progress_bar(1000, "evaluate", file=stream, percent=True) as bar:
        for _ in range(1000):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 21
    assert lines[-1].startswith("evaluate [####################] 100% ")


def test_on_a_terminal_the_line_is_redrawn_in_place():
    stream = Terminal()
    with progress_bar(4, "smoothgrad", file=stream) as bar:
        bar.update(4)
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    assert "smoothgrad [####################] 4/4" in text


def test_disabled_draws_nothing():
    stream = io.StringIO()
    with progress_bar(4, "x", enabled=False, file=stream) as bar:
        bar.update(4)
    assert stream.getvalue() == ""
