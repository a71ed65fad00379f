"""One writer per folder: `rq preprocess` locks its output folder, `rq train` its run folder, so a second
writer stops at once with one line naming the first, instead of both writing and the last one winning.

The lock is a POSIX record lock on `FOLDER/.rq-lock`, which also holds who took it (pid, host, start
time, command), and is removed at a clean end. It belongs to the process alone (worker processes it forks do not share it, so an
orphaned worker of a killed run cannot keep it) and the kernel drops it when the process dies, so the
lock of a killed writer is simply taken over (and said so: the file still names the dead holder). On
a file system without locks the holder's pid decides: alive on this host = held."""
import errno
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rq.pipeline.atomic import alive, write_error
from rq.pipeline.console import err

LOCK = ".rq-lock"


class FolderBusy(Exception):
    """Another live process writes this folder: one line naming it (the CLI exits 1)."""


@contextmanager
def writer_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold the folder's writer lock for the block; FolderBusy if another process holds it. A clean end
    or an error removes the lock file; one left behind names a writer that was killed."""
    folder = Path(folder)
    path = folder / LOCK
    fd = _locked(folder, path)
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "command": command}
        _rewrite(fd, (json.dumps(me) + "\n").encode(), path)
        yield
    finally:
        path.unlink(missing_ok=True)   # still locked: a process that opened it meanwhile sees it gone (below)
        os.close(fd)                   # releases the lock


def _locked(folder: Path, path: Path) -> int:
    """An open, locked lock file that is still the one at `path` (a holder ending removes its file: a
    lock won on a removed file is worth nothing, so that case tries again)."""
    for _ in range(100):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise write_error(path, e) from None
        previous = _holder(fd)
        if not _lock(fd, previous):
            os.close(fd)
            raise FolderBusy(f"{folder}: in use by {_describe(previous)}; wait for it to end or use another folder")
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        if previous and previous.get("pid") != os.getpid():
            err.print(f"note: {folder}: took over the lock left by {_describe(previous)}, which is no longer "
                      "running", markup=False)
        return fd
    raise FolderBusy(f"{folder}: its lock file keeps being replaced; is another rq starting and ending in a loop?")


def _lock(fd: int, previous: dict | None) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EAGAIN):
            return False
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        # no flock here (some network or FUSE file systems): a live holder on this host still counts
        return not (previous and previous.get("host") == socket.gethostname() and alive(previous.get("pid", 0)))


def _holder(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        holder = json.loads(text) if text else None
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "started": "?", "command": "an unknown process"}
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process (it left no details)"
    return (f"{holder.get('command', 'rq')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')})")


def _rewrite(fd: int, data: bytes, path: Path) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    except OSError as e:
        raise write_error(path, e) from None

