"""One writer per output folder: ``prepare``, ``train`` and ``evaluate`` hold an exclusive lock on theirs.

Two commands writing the same folder at once would both finish "successfully" with one's weights, an interleaved
log, or a manifest missing the other's cases. :func:`writes_folder` wraps a command's function so that it runs
holding ``FOLDER/.lock`` (``fcntl.flock``, released by the kernel even if the process is killed); a second writer
fails at once with :class:`FolderBusyError`, one line saying who holds the folder and what to do.

While it holds the lock, a command is the folder's only writer, so the temporary files it finds there (``.NAME.*
.tmp``, from an atomic write that a kill interrupted) are stale: they are removed.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locking (the commands still run)
    fcntl = None

__all__ = ["LOCK_FILE", "FolderBusyError", "hold_folder", "writes_folder"]

LOCK_FILE = ".lock"
# Temporary names of pseudoanomaly.io's atomic writes: ".NAME.<pid>.<hex>.tmp" (".NAME.tmp" and ".NAME.<pid>.tmp"
# from earlier versions) for the kinds of file these commands write; nothing else is touched, whatever folder
# --out names.
_TEMPORARY = re.compile(r"^\..+\.(json|jsonl|pt|npz|md|png)(\.\d+(\.[0-9a-f]+)?)?\.tmp$")


class FolderBusyError(OSError):
    """Another process is writing in the folder (it holds the folder's lock)."""


@contextlib.contextmanager
def hold_folder(folder: str | os.PathLike, command: str, subfolders: tuple[str, ...] = ()) -> Iterator[Path]:
    """Hold ``folder``'s exclusive lock for the ``with`` block (the folder is created if needed).

    Args:
        folder: the output folder.
        command: the command's name, for the message a second writer gets.
        subfolders: folders inside it whose stale temporary files are removed too.

    Raises:
        FolderBusyError: another process holds the lock.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = _acquire(folder, command) if fcntl is not None else None
    try:
        for directory in (folder, *(folder / name for name in subfolders)):
            _remove_stale_temporaries(directory)
        yield folder
    finally:
        if fd is not None:
            # Unlink while still holding the lock: whoever opens the path next gets a fresh file (see _acquire).
            (folder / LOCK_FILE).unlink(missing_ok=True)
            os.close(fd)
        if created:  # a command that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()


def writes_folder(argument: str, command: str, subfolders: tuple[str, ...] = ()) -> Callable:
    """Decorator: run the function holding the lock of the folder passed as ``argument`` (see :func:`hold_folder`).

    In a data-parallel run only rank 0 takes the lock (it alone writes); the other processes run unlocked.

    An ``OSError`` without a file name raised inside (a full disk surfaces from ``write()`` that way) is re-raised
    naming the folder.
    """

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            folder = Path(bound.arguments[argument])
            from pseudoanomaly.training.distributed import rank_and_world_size  # torch: loaded by then anyway

            if rank_and_world_size()[0] != 0:
                # a data-parallel run (torchrun): rank 0 holds the folder and writes in it; the others only compute
                return function(*args, **kwargs)
            with hold_folder(folder, command, subfolders):
                try:
                    return function(*args, **kwargs)
                except OSError as exc:
                    if exc.filename is not None or exc.errno is None:
                        raise
                    raise OSError(exc.errno, f"{command} could not write in {folder}: {exc.strerror}") from exc

        return wrapper

    return decorate


def _acquire(folder: Path, command: str) -> int:
    path = folder / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip()
            os.close(fd)
            raise FolderBusyError(
                f"{folder}: another process{f' ({holder})' if holder else ''} is writing there; wait for it to "
                f"finish or use another --out for this {command}"
            ) from None
        # The holder we waited on may have unlinked the file on release: lock the file the path names now.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{command}, pid {os.getpid()}".encode())
            return fd
        os.close(fd)


def _remove_stale_temporaries(directory: Path) -> None:
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if _TEMPORARY.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
