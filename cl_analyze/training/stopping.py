"""Ctrl-C and SIGTERM while training: stop at the next batch boundary, never mid-write.

While ``stop_on_signals`` is active, the first SIGINT or SIGTERM (what ``timeout``, job
schedulers and ``docker stop`` send) only records the request; the loops call ``check`` between
batches and raise ``StopRequested`` there, so a stop takes at most one batch, and an epoch's store
row and checkpoint are always written whole. A second signal interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import types
from collections.abc import Iterator
from pathlib import Path

_requested: str | None = None


class StopRequested(KeyboardInterrupt):
    """A stop signal, raised at a safe point; a KeyboardInterrupt, so callers that handle Ctrl-C
    handle it too."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class TrainingStopped(KeyboardInterrupt):
    """Training ended by a signal, with what was saved: ``saved_epoch`` is the last epoch in
    ``last.pt`` (0: only the untrained model; None: nothing)."""

    def __init__(self, run_dir: Path, saved_epoch: int | None, signal_name: str) -> None:
        super().__init__(signal_name)
        self.run_dir = run_dir
        self.saved_epoch = saved_epoch
        self.signal_name = signal_name

    def message(self) -> str:
        return (
            f"stopped ({self.signal_name}): {saved_words(self.saved_epoch)} in {self.run_dir};"
            f" continue with `cl-analyze train --resume {self.run_dir}`"
        )


def saved_words(saved_epoch: int | None) -> str:
    """How much of a run is safe on disk, for messages: never "0 epochs are saved"."""
    if not saved_epoch:
        return "no trained epoch is saved yet"
    if saved_epoch == 1:
        return "1 trained epoch is saved"
    return f"{saved_epoch} trained epochs are saved"


def check() -> None:
    """Raise ``StopRequested`` if a stop signal has arrived (call between batches)."""
    if _requested is not None:
        raise StopRequested(_requested)


def _handle(signum: int, frame: types.FrameType | None) -> None:
    global _requested
    name = signal.Signals(signum).name
    if _requested is not None:
        raise KeyboardInterrupt(name)  # asked twice: do not wait for the batch to end
    _requested = name


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into stop requests while the block runs; restores the previous
    handlers after. Signals can only be handled in the main thread: elsewhere a no-op."""
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    _requested = None
    for number in previous:
        signal.signal(number, _handle)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _requested = None
