"""An exclusive lock on a run directory: one ``mmbalance train`` process writes a run at a time.

Two processes training the same run (two workflows after ``snakemake --unlock``, a user beside the
workflow) would write the same checkpoint and outputs. :func:`run_lock` takes an exclusive
``flock`` on ``<run dir>/train.lock`` (Linux maps it to a POSIX record lock on NFS, so it holds
between the nodes of a cluster too) and writes the holder's pid and host into it; a second process
stops with a :class:`RunLockedError` naming the directory and that pid. The kernel drops the
lock when its process ends, however it ends, so the file a killed process leaves behind blocks
nobody: the next process takes the lock and overwrites it. The holder removes the file before it
releases the lock; a process that locked a file removed meanwhile sees that the path no longer
leads to its file and tries again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from mmbalance.errors import MMBalanceError

LOCK_NAME = "train.lock"


class RunLockedError(MMBalanceError):
    """Another process holds the run directory's lock."""


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 256).decode(errors="replace").split()
    return f"pid {text[0]} on {text[1]}" if len(text) >= 2 else "a process that has not written its pid yet"


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def run_lock(directory: Path) -> Iterator[Path]:
    """Hold the lock of ``directory`` (which must exist) for the ``with`` block (module docstring)."""
    path = Path(directory) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise RunLockedError(
                f"{directory}: another mmbalance train ({holder}) is training this run; wait for it or "
                f"stop it (the lock ends with its process)"
            ) from exc
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield path
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)
