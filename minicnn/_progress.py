"""A plain-text progress bar on stderr, for the work that runs many passes.

SmoothGrad, integrated gradients, occlusion and the evaluation forward (and backward) hundreds
of copies of an image in batches; ``Progress`` shows how far they are, e.g.

    smoothgrad [##########----------]  25/50
    evaluate [####----------------]  20%  41 s, ~164 s left

On a terminal the line is redrawn in place (a carriage return, at most 10 times a second).
Elsewhere (a log file, CI) a carriage return would pile every redraw onto one line, so a new
line is written only when the bar grows by one step: at most ``width`` + 1 lines. Elapsed time
and an estimate of the time left appear once the work has run for a second. It needs no
dependency. Inside the library it is off unless asked for (``progress=True``); the command
line turns it on.
"""
from __future__ import annotations

import sys
import time

__all__ = ["Progress"]

REDRAWS_PER_SECOND = 10  # on a terminal
SHOW_TIME_AFTER = 1.0  # seconds


class Progress:
    """Count ``done`` up to ``total`` and show the bar on ``stream``.

    - total: the number of units of work (e.g. noisy images), >= 1
    - label: printed before the bar
    - enabled: False draws nothing (the default inside the library)
    - stream: where to draw; None means sys.stderr at draw time
    - clock: seconds as a float (time.monotonic); tests pass a fake one
    - percent: show "37%" instead of "done/total" (for units that mean nothing to a reader)
    Use as a context manager, or call ``close()`` to end the line.
    """

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None,
                 width: int = 20, clock=time.monotonic, percent: bool = False):
        self.total, self.label, self.enabled = max(int(total), 1), label, bool(enabled)
        self.percent = bool(percent)
        self.stream, self.width, self.clock = stream, int(width), clock
        self.done = 0
        self._start = clock()
        self._drawn = None  # the last line written, so unchanged lines are not redrawn
        self._drawn_at = None  # when it was written (terminal throttling)
        self._drawn_filled = -1  # bar steps in the last line written (log mode)

    def __enter__(self):
        self._draw()
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n: int = 1):
        """Record ``n`` more units done and redraw if the line changed."""
        self.done = min(self.done + int(n), self.total)
        self._draw()

    def _filled(self) -> int:
        return self.width * self.done // self.total

    def line(self) -> str:
        """The bar as text: 'label [###---]  done/total' (+ time after the first second)."""
        filled = self._filled()
        bar = "#" * filled + "-" * (self.width - filled)
        digits = len(str(self.total))
        count = f"{100 * self.done // self.total:3d}%" if self.percent \
            else f"{self.done:>{digits}}/{self.total}"
        text = f"{self.label} [{bar}] {count}"
        elapsed = self.clock() - self._start
        if elapsed >= SHOW_TIME_AFTER:
            text += f"  {elapsed:.0f} s"
            if 0 < self.done < self.total:
                text += f", ~{elapsed * (self.total - self.done) / self.done:.0f} s left"
        return text

    def close(self):
        """End the bar: on a terminal, draw its final state and end the line."""
        if self.enabled and self._drawn is not None and self._is_terminal():
            self._draw(final=True)
            self._write("\n")
        self._drawn = None
        self.enabled = False  # closed: further updates draw nothing

    def _is_terminal(self) -> bool:
        return bool(getattr(self._stream(), "isatty", lambda: False)())

    def _draw(self, final=False):
        if not self.enabled:
            return
        if self._is_terminal():  # redraw in place, at most REDRAWS_PER_SECOND times a second
            now, text = self.clock(), self.line()
            recent = self._drawn_at is not None and now - self._drawn_at < 1 / REDRAWS_PER_SECOND
            if text != self._drawn and (final or not recent):
                self._write("\r" + text)
                self._drawn, self._drawn_at = text, now
        elif self._filled() != self._drawn_filled:  # a log: a whole line per step of the bar
            self._drawn = self.line()
            self._write(self._drawn + "\n")
            self._drawn_filled = self._filled()

    def _stream(self):
        return self.stream if self.stream is not None else sys.stderr

    def _write(self, text):
        stream = self._stream()
        stream.write(text)
        stream.flush()
