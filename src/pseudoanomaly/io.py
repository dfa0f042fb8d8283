"""Atomic file writes: a file is either complete or absent, never half-written.

Every file this library and its examples write (checkpoints, prepared volumes, manifests, JSON reports, NIfTI
probability maps, figures) goes through :func:`atomic_write` or :func:`atomic_path`. Content goes to a temporary
file beside the target (``.NAME.<pid>.<hex>.tmp``), is flushed to disk, and is then renamed onto the target,
which is atomic on one file system: a crash, a kill or a full disk mid-write leaves the previous file as it was.
Temporary files of writers that were killed (their process no longer exists) are removed by the next write of
the same file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_path", "atomic_write"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; when the block ends without error, it replaces ``path``.

    For writers that take a file name rather than a file object (``nibabel.save``, ``cv2.imwrite``), which
    infer the format from the name's ending: give that ending as ``suffix``. The temporary file exists (empty)
    when the block starts, with the permissions ``open()`` would give it (``0o666`` less the umask). On any
    exception, it is removed and ``path`` is left as it was.

    Args:
        path: target file; its folder is created if needed.
        suffix: ending the temporary name keeps (e.g. ``".nii.gz"``).

    Raises:
        OSError: writing failed; a full disk names ``path`` (``write``/``fsync`` report no file name).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with atomic_path(Path(tmp) / "notes.txt") as part:
        ...         _ = part.write_text("done")
        ...     (Path(tmp) / "notes.txt").read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
    # os.open applies the umask to 0o666, as open() does (mkstemp's 0o600 would make outputs private to their owner).
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            # Without fsync, a power loss after os.replace can leave a renamed but empty file.
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None and exc.filename != str(tmp):
            raise
        # A full disk surfaces from write() or fsync() without a file name: say which file could not be written.
        raise OSError(exc.errno, f"cannot write {exc.strerror or exc}", str(path)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` by calling ``write(fileobj)`` on a binary file object; atomically (see :func:`atomic_path`).

    Args:
        path: target file; its folder is created if needed.
        write: fills the binary file object it is given (``lambda f: torch.save(obj, f)``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import json, tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = atomic_write(Path(tmp) / "run" / "a.json", lambda f: f.write(json.dumps({"a": 1}).encode()))
        ...     json.loads(path.read_text())
        {'a': 1}
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
    return Path(path)


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files of ``path`` left by writers that were killed (their process no longer exists)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            tmp.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process, or a platform without signals: keep its file
        return True
    return True
