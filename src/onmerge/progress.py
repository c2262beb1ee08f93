"""How far a long step is, with an ETA, in the job's log: training steps, answers generated, judgments made.

A terminal gets tqdm's bar. A job's log is a file, where tqdm's carriage-return redraws pile up into one
ever-growing line, so there an update prints a plain line only when `every_s` seconds have passed since the last
one, and the last update always prints:

    training: 32/64 steps (50%), 00:41 elapsed, ETA 00:40

The libraries' own bars (loading weights, tokenizing a dataset, writing shards) are turned off there for the same
reason (`quiet_library_bars`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")

EVERY_S = 30.0  # a line per half minute: a 3-hour training cell logs 360 of them
LINE = "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {elapsed} elapsed, ETA {remaining}"


class Progress:
    """Counts work done out of `total` (`done` of it before this process started, when a run resumes).

    Thread-safe, so concurrent workers may each `advance` it. Use as a context manager, which closes a bar.
    """

    def __init__(
        self,
        what: str,
        total: int,
        unit: str,
        *,
        done: int = 0,
        stream: TextIO | None = None,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.unit, self.done = what, total, unit, done
        self._initial, self._every_s, self._clock = done, every_s, clock
        self._stream = sys.stderr if stream is None else stream
        self._lock = threading.Lock()
        self._started = self._printed = clock()
        self._bar = (
            tqdm(total=total, initial=done, desc=what, unit=f" {unit}", file=self._stream)
            if self._stream.isatty()
            else None
        )

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            if self._bar is not None:
                self._bar.update(count)
                return
            now = self._clock()
            if self.done >= self.total or now - self._printed >= self._every_s:
                self._printed = now
                print(self.line(now - self._started), file=self._stream, flush=True)

    def counted(self, result: T) -> T:
        """`result`, counted as one unit done: `pool.map(lambda item: progress.counted(work(item)), items)`."""
        self.advance()
        return result

    def line(self, elapsed: float) -> str:
        """The plain progress line after `elapsed` seconds (the rate counts only this process's work)."""
        return tqdm.format_meter(
            self.done, self.total, elapsed, prefix=self.what, unit=self.unit, bar_format=LINE, initial=self._initial
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def quiet_library_bars(stream: TextIO | None = None) -> None:
    """Turn off transformers', datasets' and the hub's progress bars unless `stream` (stderr) is a terminal."""
    if (sys.stderr if stream is None else stream).isatty():
        return
    import datasets
    import huggingface_hub.utils
    import transformers.utils.logging

    datasets.disable_progress_bars()
    huggingface_hub.utils.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
