"""The data folder: one c360 at a time (a lock held for the life of the stack), and private to
its owner, since it holds customer data, secrets and logs.

Running as root, the embedded PostgreSQL runs as the system user `embedded_postgres`, which must
reach `<data_dir>/postgres`: it gets the search bit (o+x) on the folder and its parents, never
the read bit, so it can pass through but not list or read anything on the way.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import IO

from c360.errors import C360Error

#: Files and folders c360 creates are for its owner only (the engines run as children and
#: inherit it, so lake files, logs and pid files are 0600 too).
PRIVATE_UMASK = 0o077

#: The data folder's mode; the embedded_postgres user, when there is one, also gets o+x.
PRIVATE_DIR_MODE = 0o700

LOCK_NAME = "c360.lock"

#: What c360 keeps in the data folder besides PostgreSQL's own folder, which PostgreSQL keeps
#: at 0700 for its user itself.
_OWN_ENTRIES = ("lake", "logs", "run", "secrets", "valkey", "downloads", "c360.toml")


class InUse(C360Error):
    """Something this run needs (the data folder, a port) is held by someone else."""


class DataDirLock:
    """An exclusive `flock` on `<data_dir>/c360.lock`; the file also names the holder's pid.

    The kernel drops the lock when its holder exits, however it exits, so a killed c360 never
    leaves a stale lock behind.
    """

    def __init__(self, data_dir: Path, hint: str = "stop it or choose another --data-dir") -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self.hint = hint  # what the refusal tells the user to do
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise InUse naming the pid that holds it."""
        handle = _open_lock_file(self.path)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "unknown"
            handle.close()
            message = f"another c360 (pid {holder}) is using {self.data_dir}; {self.hint}"
            raise InUse(message) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Let the next c360 use the folder."""
        if self._handle is not None:
            self._handle.close()  # closing the only descriptor drops the flock
            self._handle = None


def create(data_dir: Path) -> None:
    """Create the data folder (and missing parents) for the owner only; fail with a clear
    message if it cannot be created or written."""
    missing = [folder for folder in [data_dir, *data_dir.parents] if not folder.exists()]
    try:
        for folder in reversed(missing):  # each one 0700, not only the last
            folder.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    except OSError as exc:
        raise C360Error(
            f"cannot create the data folder {data_dir} ({exc.strerror}); choose another "
            "--data-dir or fix the permissions of its parent"
        ) from exc
    _check_writable(data_dir)


def prepare(data_dir: Path, postgres_user: str | None = None) -> None:
    """Make the (created) data folder private: 0700, with o+x added when `postgres_user` must
    reach its PostgreSQL folder (and o+x on parents that lack it)."""
    mode = PRIVATE_DIR_MODE | (stat.S_IXOTH if postgres_user else 0)
    os.chmod(data_dir, mode)
    if postgres_user:
        allow_search(data_dir.parent)
    _tighten(data_dir)


def allow_search(path: Path) -> None:
    """Give `path` and each of its parents the search bit for others (o+x) where it is missing:
    enough to pass through, not to list. Folders that already allow it are left alone."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)


def _check_writable(data_dir: Path) -> None:
    """Fail at once with a clear message, not later in the middle of starting engines."""
    probe = data_dir / f".c360-write-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise C360Error(
            f"cannot write in the data folder {data_dir} ({exc.strerror}); choose another "
            "--data-dir or make it writable"
        ) from exc


def _tighten(data_dir: Path) -> None:
    """Take group and other access off what c360 keeps in the folder, including what an
    earlier version left open (lake files, logs and pid files once were 0644)."""
    for name in _OWN_ENTRIES:
        top = data_dir / name
        if not top.exists():
            continue
        _make_private(top)
        for root, folders, files in os.walk(top):
            for entry in [*folders, *files]:
                _make_private(Path(root) / entry)


def _make_private(path: Path) -> None:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode) or not stat.S_IMODE(mode) & 0o077:
        return
    os.chmod(path, stat.S_IMODE(mode) & ~0o077)


def _open_lock_file(path: Path) -> IO[str]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise C360Error(
                f"cannot write in the data folder {path.parent} ({exc.strerror}); choose another "
                "--data-dir or make it writable"
            ) from exc
        raise
    return os.fdopen(fd, "r+")
