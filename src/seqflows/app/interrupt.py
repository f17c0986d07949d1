r"""Interruption: SIGTERM and SIGINT end a training run at a step boundary, resumably.

Schedulers (SLURM, Kubernetes) send SIGTERM before they preempt or cancel a job, and Ctrl-C sends
SIGINT. While a :class:`StopRequest` is active, the first of these signals is only recorded; the
training loop (:class:`~seqflows.app.callbacks.LastCheckpoint`) looks at it at the next step
boundary, after that step's validation when one is due, writes ``last.ckpt`` and raises
:class:`Interrupted`. The command line prints its one line and exits with 128 + the signal number
(143 for SIGTERM, 130 for SIGINT), so that ``make``, shell pipelines and the reproduction
stop instead of carrying on with a half-trained model. A second SIGINT (Ctrl-C twice) stops at
once, without a new checkpoint (the last periodic ``last.ckpt`` stays whole); more SIGTERMs change
nothing (SLURM, for one, signals every process of a job step, so a child may get two).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import IO, Any

__all__ = [
    "InterruptAtOnce",
    "Interrupted",
    "STOP_SIGNALS",
    "StopRequest",
    "exit_on_sigint",
    "run_forwarding_signals",
    "sigint_at_once",
]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    r"""A run stopped by a signal.

    Arguments:
        signal_number: The signal (``signal.SIGTERM``, ``signal.SIGINT``).
        message: The one line to print (empty: print nothing, e.g. on the other processes of a
            data-parallel run).
    """

    def __init__(self, signal_number: int, message: str = "") -> None:
        super().__init__(message)
        self.signal_number = int(signal_number)
        self.message = message

    @property
    def exit_status(self) -> int:
        """128 + the signal number, the shell's convention (143: SIGTERM, 130: SIGINT)."""
        return 128 + self.signal_number

    @property
    def signal_name(self) -> str:
        """``SIGTERM``, ``SIGINT``, ..."""
        return signal_name(self.signal_number)


def signal_name(number: int) -> str:
    """The name of signal ``number`` (``SIGTERM``), or its number when it has none."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class StopRequest:
    r"""Records SIGTERM and SIGINT instead of dying, while active (a context manager).

    The first signal sets :attr:`signal_number`; the training loop stops at its next step boundary.
    A second SIGINT raises ``KeyboardInterrupt`` at once, as Ctrl-C does by default (checkpoints
    are written atomically, so this never leaves a half-written file). Outside the main thread,
    where Python cannot set handlers, the request stays inactive and signals keep their action.

    Example:
        >>> with StopRequest() as stop:
        ...     stop.signal_number is None
        True
    """

    def __init__(self, signals: Sequence[int] = STOP_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.signal_number: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.getsignal(number) for number in self.signals}
            self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def install(self) -> None:
        """Sets the handlers again (Lightning sets its own SIGTERM handler as training starts)."""
        for number in self._previous:  # none when inactive
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_number is None:
            self.signal_number = number
        elif number == signal.SIGINT:
            raise KeyboardInterrupt


class InterruptAtOnce(StopRequest):
    r"""Raises :class:`Interrupted` at the first SIGTERM or SIGINT, while active (a context
    manager): for work that may stop anywhere because it writes atomically (``seqflows
    convert``). Further signals are ignored while the first one unwinds.

    Arguments:
        message: The one line to print; ``{signal}`` becomes the signal's name.
    """

    def __init__(self, message: str, signals: Sequence[int] = STOP_SIGNALS) -> None:
        super().__init__(signals)
        self.message = message

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_number is None:
            self.signal_number = number
            raise Interrupted(number, self.message.format(signal=signal_name(number)))


def sigint_at_once() -> Interrupted:
    """The :class:`Interrupted` of a Ctrl-C that no training took over (start-up, other commands):
    ``interrupted by SIGINT``, exit status 130."""
    return Interrupted(signal.SIGINT, "interrupted by SIGINT")


@contextmanager
def exit_on_sigint() -> Iterator[None]:
    r"""SIGINT prints the line of :func:`sigint_at_once` and ends the process at once with exit
    status 130, for the body of the ``with``: the imports of a command's modules, which write
    nothing.

    A ``KeyboardInterrupt`` raised inside an import does not reliably reach the command line:
    torch swallows one that hits its import of NumPy (leaving NumPy half imported, to fail
    later), and one inside torch's C++ initialisation aborts the process. Outside the main
    thread the body runs with the signal's action unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(number: int, frame: FrameType | None) -> None:
        interrupted = sigint_at_once()
        print(f"seqflows: {interrupted.message}", file=sys.stderr, flush=True)
        os._exit(interrupted.exit_status)

    previous = signal.signal(signal.SIGINT, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


def run_forwarding_signals(
    command: Sequence[str],
    stdout: IO[Any] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> int:
    r"""Runs ``command`` and waits for it; a SIGTERM to this process is passed on to it.

    The child can then stop cleanly (``seqflows train`` writes its checkpoint and exits with 143),
    and this process waits for it instead of dying first and leaving it behind, or killing it as
    :func:`subprocess.run` does on an exception. SIGINT is not passed on: Ctrl-C reaches every
    process of the terminal's foreground group, the child included, and a second SIGINT would stop
    it at once; this process keeps waiting.

    The child's stdout and stderr go to ``stdout`` (None: this process's stdout). With
    ``on_line``, they pass through this process, line by line: each line is written to
    ``stdout`` (when given) and handed to ``on_line`` (e.g. to report the child's progress).

    Returns:
        The exit status of the child (negative: killed by that signal).
    """
    if on_line is None:
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT)
    else:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )

    def forward(number: int, frame: FrameType | None) -> None:
        if number == signal.SIGTERM and process.poll() is None:
            process.send_signal(number)

    main = threading.current_thread() is threading.main_thread()
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS} if main else {}
    try:
        for number in previous:
            signal.signal(number, forward)
        if on_line is not None and process.stdout is not None:
            for line in process.stdout:  # until the child closes it (ends)
                if stdout is not None:
                    stdout.write(line)
                    stdout.flush()
                on_line(line)
        return process.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        if process.poll() is None:  # this process is being torn down by something else
            process.kill()
            process.wait()
