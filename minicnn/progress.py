"""A plain-text progress bar on stderr, for the attribution methods that run many passes.

SmoothGrad, integrated gradients and occlusion forward (and backward) hundreds of copies of an
image in batches; ``Progress`` shows how far they are, e.g.

    smoothgrad [##########----------]  25/50

It needs no dependency and no terminal features beyond a carriage return. Inside the library
it is off unless asked for (``progress=True``); the command line turns it on.
"""
from __future__ import annotations

import sys

__all__ = ["Progress"]


class Progress:
    """Count ``done`` up to ``total`` and redraw one line when the drawn bar would change.

    - total: the number of units of work (e.g. noisy images), >= 1
    - label: printed before the bar
    - enabled: False draws nothing (the default inside the library)
    - stream: where to draw; None means sys.stderr at draw time
    Use as a context manager, or call ``close()`` to end the line.
    """

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None,
                 width: int = 20):
        self.total, self.label, self.enabled = max(int(total), 1), label, bool(enabled)
        self.stream, self.width = stream, int(width)
        self.done = 0
        self._drawn = None  # the last line written, so unchanged lines are not redrawn

    def __enter__(self):
        self._draw()
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1):
        """Record ``n`` more units done and redraw if the line changed."""
        self.done = min(self.done + int(n), self.total)
        self._draw()

    def line(self) -> str:
        """The bar as text: 'label [###---]  done/total'."""
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        digits = len(str(self.total))
        return f"{self.label} [{bar}] {self.done:>{digits}}/{self.total}"

    def close(self):
        """End the line (only if something was drawn)."""
        if self.enabled and self._drawn is not None:
            self._write("\n")
            self._drawn = None
            self.enabled = False  # closed: further updates draw nothing

    def _draw(self):
        if not self.enabled:
            return
        text = self.line()
        if text != self._drawn:
            self._write("\r" + text)
            self._drawn = text

    def _write(self, text):
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(text)
        stream.flush()
