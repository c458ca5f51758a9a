"""Progress of a run on stderr that never shares a line with a result.

On a terminal it is one line redrawn in place, erased before anything else is printed on that terminal (results
on stdout, messages on stderr) and drawn again after. Elsewhere (a log file, CI) it is a count line every tenth of
the run and at least every `interval` seconds, so a log shows how far a long run got and how long it has left.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

ERASE_LINE = "\r\x1b[K"
# The time-left estimate: results come in bursts (a group of photos, a Ray batch of 32) after a start-up (loading
# Ray, its actors), so the raw estimate swings. The rate is measured from the first result on, and shown once
# results have come for RATE_WINDOW seconds; the finish time it gives is smoothed over about ESTIMATE_SMOOTHING s.
RATE_WINDOW = 2.0
ESTIMATE_SMOOTHING = 3.0


class Progress:
    def __init__(
        self,
        total: int,
        label: str = "classifying",
        *,
        stream: TextIO | None = None,
        results: TextIO | None = None,
        interval: float = 30.0,
        quiet: bool = False,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.done = 0
        self.started = self.last_line = time.perf_counter()
        self.enabled = total > 1 and not quiet  # one photo needs no progress; `quiet` shows only echo()'s lines
        self.live = self.enabled and _is_terminal(self.stream)
        # Results written to the same terminal would land on the bar's line: erase it before each one.
        self.shared = self.live and results is not None and _is_terminal(results)
        self.drawn = False
        self.first_result: tuple[float, int] | None = None  # (time, done) at the first update
        self.finish: tuple[float, float] | None = None  # (smoothed finish time, when it was last updated)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()

    def update(self, steps: int = 1) -> None:
        self.done += steps
        now = time.perf_counter()
        if self.first_result is None:
            self.first_result = (now, self.done)
        self._estimate_finish(now)
        if self.live:
            self._draw()
        elif self.enabled and self._line_due():
            self.last_line = time.perf_counter()
            self.stream.write(f"{self.label}: {self._status()}\n")
            self.stream.flush()

    def before_result(self) -> None:
        """Call before writing a result to its stream: erases the bar when both share the terminal."""
        if self.shared:
            self.clear()

    def echo(self, message: str) -> None:
        """A message line on the progress stream, never glued to the bar."""
        self.clear()
        self.stream.write(message + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.drawn:
            self.stream.write(ERASE_LINE)
            self.stream.flush()
            self.drawn = False

    def _draw(self) -> None:
        self.stream.write(f"{ERASE_LINE}{self.label} {self._status()}")
        self.stream.flush()
        self.drawn = True

    def _line_due(self) -> bool:
        tenth = max(1, self.total // 10)
        return self.done % tenth == 0 or self.done == self.total or (
            time.perf_counter() - self.last_line >= self.interval
        )

    def _status(self) -> str:
        elapsed = time.perf_counter() - self.started
        text = f"{self.done}/{self.total} ({self.done / self.total:.0%}), {_clock(elapsed)} elapsed"
        if 0 < self.done < self.total and self.finish is not None:
            text += f", about {_clock(max(0.0, self.finish[0] - time.perf_counter()))} left"
        return text

    def _estimate_finish(self, now: float) -> None:
        """Update the smoothed finish time with the current rate (see RATE_WINDOW, ESTIMATE_SMOOTHING)."""
        if not 0 < self.done < self.total or self.first_result is None:
            return
        since, done_then = self.first_result
        if now - since < RATE_WINDOW or self.done == done_then:
            return  # no rate measured yet: no estimate rather than one made of the start-up
        seconds_per_photo = (now - since) / (self.done - done_then)  # start-up left out
        finish = now + seconds_per_photo * (self.total - self.done)
        if self.finish is None:
            self.finish = (finish, now)
            return
        smoothed, updated = self.finish
        weight = 1.0 - math.exp(-(now - updated) / ESTIMATE_SMOOTHING)  # a burst of results barely moves it
        self.finish = (smoothed + weight * (finish - smoothed), now)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
