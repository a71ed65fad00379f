"""Every file rq writes into an output or cache folder appears whole or not at all: it is written to a
temporary name in the target's folder (same file system) and moved into place with `os.replace`, so a
SIGKILL at any moment leaves either the old file or the new one, never a half-written one."""
import os
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

TMP_SUFFIX = ".rqtmp"


@contextmanager
def atomic_file(path: Path, tmp_dir: Path | None = None) -> Iterator[BinaryIO]:
    """Open a temporary file for writing; on a clean exit it replaces `path`, on an error it is removed.
    `tmp_dir` (same file system) keeps temporaries out of a folder that others list."""
    path = Path(path)
    folder = Path(tmp_dir) if tmp_dir else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{path.name}.{os.getpid()}{TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            yield f
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` unless the file already holds exactly these bytes (then leave it untouched,
    mtime included). Returns whether the file was written."""
    path = Path(path)
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    with atomic_file(path) as f:
        f.write(data)
    return True


def remove_stale_temporaries(folder: Path) -> None:
    """Remove temporaries left by killed runs: those whose writer process no longer exists."""
    if not Path(folder).is_dir():
        return
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        pid = tmp.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
