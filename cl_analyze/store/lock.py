"""The run folder's lock: one writer at a time, freed when its holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from cl_analyze.errors import CLAnalyzeError

LOCK_NAME = "run.lock"


# A lock probe holds a shared lock for microseconds; a writer retries this long before it
# concludes that another process holds the lock.
LOCK_RETRY_SECONDS = 0.5


def lock_path_of(store: Path) -> Path:
    """The lock guarding a store: ``run.lock`` beside ``run.h5``, ``x.lock`` beside ``x.h5``."""
    return store.with_suffix(".lock")


def _describe_holder(lock: Path) -> tuple[int, str]:
    try:
        pid_text, _host, *rest = lock.read_text().split()
        return int(pid_text), rest[0] if rest else "train"
    except (OSError, ValueError):
        return 0, "unknown"  # being written by its new holder this very moment


def lock_holder(lock: Path) -> tuple[int, str] | None:
    """(pid, role) of the process holding ``lock``, or None when no process holds it.

    The lock is an ``flock`` on the file, which the kernel releases when its holder dies: a
    killed process's lock is never mistaken for a live one, whatever the file says.
    """
    try:
        descriptor = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe_holder(lock)
    except OSError:
        return None
    finally:
        os.close(descriptor)  # also releases the probe's shared lock
    return None


def writer_alive(run_dir: Path) -> bool:
    """True while a trainer writes the run (a crashed one does not count)."""
    holder = lock_holder(Path(run_dir) / LOCK_NAME)
    return holder is not None and holder[1] == "train"


def _acquire(lock: Path, role: str) -> int:
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    while True:
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise CLAnalyzeError(
                f"cannot write in {lock.parent} ({error.strerror}): pick a writable folder"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            pid, holder_role = _describe_holder(lock)
            raise CLAnalyzeError(
                f"{lock.parent} is being written by another process ({holder_role}, pid {pid}):"
                " wait for it to finish, or stop it"
            ) from None
        except OSError as error:
            os.close(descriptor)
            raise CLAnalyzeError(
                f"cannot lock {lock} ({error.strerror}): the filesystem does not support file"
                " locks; use a local folder"
            ) from None
        # The previous holder unlinks the file as it lets go: a lock taken on the unlinked file
        # guards nothing, so take it again on the file now at that path.
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        held = os.fstat(descriptor)
        if current is not None and (current.st_ino, current.st_dev) == (held.st_ino, held.st_dev):
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()} {socket.gethostname()} {role}\n".encode())
            return descriptor
        os.close(descriptor)


@contextlib.contextmanager
def file_lock(lock: Path, role: str) -> Iterator[None]:
    """Hold ``lock`` exclusively: one writer (train, metrics, embed, repair) at a time.

    An ``flock`` taken atomically by the kernel: two processes can never both hold it, and a
    dead holder's lock frees itself. The file names the holder (pid, host, role) for messages.
    """
    descriptor = _acquire(lock, role)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # before letting go, so no one locks a file about to vanish
        os.close(descriptor)


@contextlib.contextmanager
def run_lock(run_dir: Path, role: str, lock_name: str = LOCK_NAME) -> Iterator[None]:
    """Hold a run (or sweep) folder's lock; see ``file_lock``."""
    with file_lock(Path(run_dir) / lock_name, role):
        yield
