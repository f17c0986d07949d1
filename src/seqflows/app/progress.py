r"""Progress with the time left, readable on a terminal and in a log file alike.

On a terminal, :class:`Progress` is a tqdm bar redrawn in place. Elsewhere (a log file, a pipe,
the output of ``make`` kept by a CI job), where a redrawn bar would be one endless line of
carriage returns, it writes one line at a time, at most every ``interval`` seconds and once at
the end::

    evaluate: 12/40 batches (30%), 0:42 elapsed, 1:38 left

The time left is extrapolated from the rate so far. Progress goes to stderr, so that stdout holds
only what a command returns (``--json``).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = [
    "Progress",
    "estimate_line",
    "format_duration",
    "is_terminal",
    "progress_line",
    "rough_duration",
    "say",
    "seconds_left",
]


def say(message: str) -> None:
    """One line of information for the user, ``seqflows: MESSAGE``, on stderr: a command's stdout
    holds only its result."""
    print(f"seqflows: {message}", file=sys.stderr, flush=True)


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``, as tqdm writes durations.

    Example:
        >>> format_duration(42.4), format_duration(725), format_duration(3725)
        ('0:42', '12:05', '1:02:05')
    """
    whole = max(int(round(seconds)), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rough_duration(seconds: float) -> str:
    """A duration as a person says it: ``40 s``, ``12 min``, ``1 h 5 min``.

    Example:
        >>> rough_duration(42.4), rough_duration(725), rough_duration(3725)
        ('42 s', '12 min', '1 h 2 min')
    """
    whole = max(int(round(seconds)), 0)
    if whole < 60:
        return f"{whole} s"
    minutes = int(round(whole / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def estimate_line(seconds_per_step: float, steps: int, resumed: bool = False) -> str:
    r"""The estimate of a run's time that ``seqflows train`` prints once its first steps are
    timed (:class:`~seqflows.app.callbacks.RunEstimate`).

    Example:
        >>> estimate_line(1.2, 3000)
        'about 1.2 s a step: the 3000 steps of this run take about 1 h 0 min'
        >>> estimate_line(0.25, 2000, resumed=True)
        'about 0.25 s a step: the 2000 steps left take about 8 min'
    """
    rate = f"{seconds_per_step:.2g}" if seconds_per_step < 10 else f"{seconds_per_step:.0f}"
    which = "left" if resumed else "of this run"
    duration = rough_duration(seconds_per_step * steps)
    return f"about {rate} s a step: the {steps} steps {which} take about {duration}"


def seconds_left(done: float, total: float, elapsed: float) -> float | None:
    """The seconds left to reach ``total`` at the rate so far (None before any progress).

    Example:
        >>> seconds_left(10, 40, 30.0)
        90.0
    """
    if done <= 0 or elapsed <= 0:
        return None
    return max(total - done, 0) * elapsed / done


def progress_line(
    description: str,
    done: int,
    total: int,
    unit: str,
    elapsed: float,
    left: float | None,
    postfix: str = "",
) -> str:
    """One line of progress: done/total, the share done, the time elapsed and the time left.

    Example:
        >>> progress_line("evaluate", 12, 40, "batches", 42.0, 98.0)
        'evaluate: 12/40 batches (30%), 0:42 elapsed, 1:38 left'
    """
    share = 100 * done / total if total > 0 else 100.0
    line = f"{description}: {done}/{total} {unit} ({share:.0f}%)"
    line += f", {format_duration(elapsed)} elapsed"
    line += f", {format_duration(left)} left" if left is not None else ", time left unknown"
    return f"{line}, {postfix}" if postfix else line


class Progress:
    r"""Progress of a loop of known length: a tqdm bar on a terminal, lines elsewhere.

    Arguments:
        total: Units of work (batches, steps, shards).
        description: What is being done (the start of every line).
        unit: The name of a unit, plural (``batches``).
        initial: Units done before this process started (a resumed run): they count towards
            ``total`` but not towards the rate.
        stream: Where to write (None: sys.stderr at the time of the call).
        interval: Seconds between two lines (log files); the bar redraws itself as tqdm does.
        bar: Force the bar (True) or lines (False); None: a bar when ``stream`` is a terminal
            and tqdm is installed.

    Example:
        >>> import io
        >>> log = io.StringIO()
        >>> with Progress(2, "evaluate", "batches", stream=log, bar=False) as progress:
        ...     progress.update()
        ...     progress.update()
        >>> log.getvalue().startswith("evaluate: 2/2 batches (100%), 0:00 elapsed")
        True
    """

    def __init__(
        self,
        total: int,
        description: str,
        unit: str = "items",
        initial: int = 0,
        stream: IO[str] | None = None,
        interval: float = 10.0,
        bar: bool | None = None,
    ) -> None:
        self.total = int(total)
        self.description = description
        self.unit = unit
        self.initial = self.done = int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.postfix = ""
        self.started = time.perf_counter()
        self._printed_at = self.started
        self._printed_done: int | None = None
        self._bar: Any = None
        if bar is None:
            bar = is_terminal(self.stream)
        if bar:
            try:
                from tqdm import tqdm
            except ModuleNotFoundError:  # tqdm comes with the data and train extras
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(
                    total=self.total,
                    initial=self.initial,
                    desc=description,
                    unit=unit,
                    file=self.stream,
                    dynamic_ncols=True,
                )

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self.started

    def seconds_left(self) -> float | None:
        """The seconds left at the rate of this process so far (None before any progress)."""
        return seconds_left(self.done - self.initial, self.total - self.initial, self.elapsed)

    def line(self) -> str:
        """The current progress as one line."""
        left = self.seconds_left()
        return progress_line(
            self.description, self.done, self.total, self.unit, self.elapsed, left, self.postfix
        )

    def set_postfix(self, text: str) -> None:
        """Text to show after the times (e.g. the latest loss)."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def due(self) -> bool:
        """Whether a line would be written now (always with a bar, which redraws itself)."""
        return self._bar is not None or time.perf_counter() - self._printed_at >= self.interval

    def update(self, count: int = 1) -> None:
        """``count`` more units done."""
        self.update_to(self.done + count)

    def update_to(self, done: int) -> None:
        """``done`` units done in all."""
        if self._bar is not None:
            self._bar.update(done - self.done)
            self.done = done
            return
        self.done = done
        now = time.perf_counter()
        if now - self._printed_at >= self.interval:
            self._print()
            self._printed_at = now

    def close(self) -> None:
        """Ends the bar, or writes the last line (unless it has been written)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._printed_done != self.done:
            self._print()

    def _print(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._printed_done = self.done

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (False for files, pipes and closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
