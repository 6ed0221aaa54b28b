"""Progress bars for the work that runs many passes, through tqdm.

SmoothGrad, integrated gradients, occlusion, class models, the sanity checks and the
evaluation forward (and backward) hundreds of copies of an image; ``progress_bar`` shows how
far they are, e.g.

    smoothgrad [########------------] 20/50 00:01<00:01
    evaluate [####----------------]  20% 00:41<02:44

The total is in whatever unit keeps the estimate of the time left honest: the evaluation
counts forward + backward passes, so that the first images, which carry the slow methods,
weigh what they cost. On a terminal tqdm redraws the line in place (at most 10 times a
second). In a log (stderr is a file or a pipe, as in CI) a carriage return would pile every
redraw onto one line, so a whole line is written each time the bar grows by one step: at most
21 lines per bar. Inside the library bars are off unless asked for (``progress=True``); the
command line turns them on. This module imports nothing else of minicnn.
"""
from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["progress_bar", "WIDTH"]

WIDTH = 20  # characters of the bar; in a log, one line per character filled


def progress_bar(total, label: str, enabled: bool = True, percent: bool = False,
                 file=None) -> tqdm:
    """A bar counting up to ``total`` units on ``file`` (default stderr), used as a context
    manager: ``with progress_bar(n, "smoothgrad", progress) as bar: ... bar.update(k)``.

    - enabled: False draws nothing (and costs next to nothing)
    - percent: show "37%" instead of "done/total" (for units that mean nothing to a reader,
      such as the evaluation's weighted passes)
    """
    file = sys.stderr if file is None else file
    count = "{percentage:3.0f}%" if percent else "{n_fmt}/{total_fmt}"
    options = dict(total=total, desc=label, file=file, disable=not enabled, ascii="-#",
                   bar_format="{desc} [{bar:%d}] %s {elapsed}<{remaining}" % (WIDTH, count),
                   mininterval=0.1, dynamic_ncols=False)
    if bool(getattr(file, "isatty", lambda: False)()):
        return tqdm(**options)
    # a log: look at every update (display() itself writes only when the bar grows)
    return _LogBar(**{**options, "mininterval": 0, "miniters": 1})


class _LogBar(tqdm):
    """tqdm for a log: a whole line each time the bar grows by a step, never a carriage
    return, and nothing to clear at the end."""

    def __init__(self, *args, **kwargs):
        self._logged = None  # the step of the last line written
        super().__init__(*args, **kwargs)
        self.sp = None  # tqdm then leaves the last line as it is when the bar closes

    def display(self, msg=None, pos=None):
        if msg is not None:  # tqdm asking to clear the line: a log has nothing to clear
            return True
        step = WIDTH * self.n // self.total if self.total else 0
        if step != self._logged:
            self._logged = step
            self.fp.write(self.__str__() + "\n")
            self.fp.flush()
        return True
