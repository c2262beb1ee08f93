"""Progress in the job's log: a plain line with the count, elapsed time and ETA at most every `every_s` seconds
and at the end when the log is a file; tqdm's bar on a terminal. The clock is a fake one: nothing here waits."""

import io
import re
from concurrent.futures import ThreadPoolExecutor

from onmerge.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_a_plain_line_at_most_every_interval_and_at_the_end():
    log, clock = io.StringIO(), Clock()
    with Progress("training", 64, "steps", stream=log, every_s=30, clock=clock) as progress:
        for _ in range(64):
            clock.now += 2.0  # a step every 2 s: a line every 15 steps, and the last
            progress.advance()
    assert log.getvalue().splitlines() == [
        "training: 15/64 steps (23%), 00:30 elapsed, ETA 01:38",
        "training: 30/64 steps (47%), 01:00 elapsed, ETA 01:08",
        "training: 45/64 steps (70%), 01:30 elapsed, ETA 00:38",
        "training: 60/64 steps (94%), 02:00 elapsed, ETA 00:08",
        "training: 64/64 steps (100%), 02:08 elapsed, ETA 00:00",
    ]
    assert "\r" not in log.getvalue()


def test_a_resumed_run_counts_from_its_checkpoint_and_rates_only_its_own_steps():
    log, clock = io.StringIO(), Clock()
    progress = Progress("training", 100, "steps", done=60, stream=log, every_s=10, clock=clock)
    for _ in range(40):
        clock.now += 1.0
        progress.advance()
    first = log.getvalue().splitlines()[0]
    assert first == "training: 70/100 steps (70%), 00:10 elapsed, ETA 00:30"  # 10 steps in 10 s, 30 to go


def test_workers_counting_at_once_give_the_whole_count_and_one_last_line():
    log = io.StringIO()
    with Progress("judging", 200, "requests", stream=log, every_s=3600) as progress, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda item: progress.counted(item * 2), range(200)))
    assert results == [item * 2 for item in range(200)]
    assert progress.done == 200
    assert re.fullmatch(r"judging: 200/200 requests \(100%\), .* elapsed, ETA 00:00\n", log.getvalue())


def test_a_terminal_gets_tqdms_bar():
    terminal = Terminal()
    with Progress("answers", 10, "prompts", stream=terminal) as progress:
        progress.advance(10)
    assert "\r" in terminal.getvalue() and "10/10" in terminal.getvalue()
