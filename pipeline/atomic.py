"""The one way rq writes a file: every file it writes (shards, manifests, cache entries, checkpoints,
config.json, metrics.jsonl, eval.json, reports, plots, generated clips) appears whole or not at all.
The bytes go to a temporary name in the target's folder (same file system) and are moved into place
with `os.replace`, so a kill or a full disk at any byte leaves either the old file or the new one.
A failed write raises WriteError: one line naming the path and the system's reason (the CLI exits 1)."""
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".rqtmp"
# `.NAME.PID.rqtmp.EXT`: the writer's pid says whether it still runs; the extension stays last, for
# writers that pick the format from the name (ffmpeg, matplotlib). rq 0.1 wrote `.NAME.PID.rqtmp`.
_TMP_NAME = re.compile(r"^\..+\.(?P<pid>\d+)\.rqtmp(\.[^.]*)?$")


class WriteError(Exception):
    """A file that could not be written (full disk, quota, read-only folder, I/O error): the message is
    one line, `PATH: cannot write: REASON`. Whatever the path held before is left as it was."""


def write_error(path: Path, error: OSError, tmp: Path | None = None) -> WriteError:
    """The one-line WriteError for an OSError met while writing `path` (through `tmp`)."""
    where = error.filename if error.filename not in (None, str(tmp)) else path
    return WriteError(f"{where}: cannot write: {error.strerror or error}")


@contextmanager
def atomic_path(path: Path, tmp_dir: Path | None = None) -> Iterator[Path]:
    """A temporary path for a writer that takes a path (ffmpeg): on a clean exit it replaces `path`,
    on an error it is removed. `tmp_dir` (same file system) keeps temporaries out of a folder that
    others list."""
    path = Path(path)
    folder = Path(tmp_dir) if tmp_dir else path.parent
    tmp = folder / f".{path.name}.{os.getpid()}{TMP_SUFFIX}{path.suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield tmp
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e, tmp) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Sink:
    """The temporary file as writers see it. It remembers the OSError of a failed write, because some
    writers (torch.save) turn it into a RuntimeError that no longer says "No space left on device"."""

    def __init__(self, f: BinaryIO):
        self._f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._f, name)


@contextmanager
def atomic_file(path: Path, tmp_dir: Path | None = None) -> Iterator[BinaryIO]:
    """A temporary file open for writing; on a clean exit it replaces `path`, on an error it is removed."""
    with atomic_path(path, tmp_dir) as tmp:
        with open(tmp, "wb") as f:
            sink = _Sink(f)
            try:
                yield sink
            except Exception:
                if sink.error is not None:
                    raise sink.error from None
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


def write_json(path: Path, value, indent: int | None = 2) -> bool:
    return write_atomic(path, (json.dumps(value, indent=indent) + "\n").encode())


def jsonl_bytes(rows: Iterable[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def read_jsonl(path: Path) -> tuple[list[dict], str | None]:
    """The rows of a JSON-lines file, and what was wrong with its last line, if anything. A last line
    without its newline or that is not a JSON object is what a kill or a full disk leaves behind a
    writer that appends (rq 0.1 did, other tools do): it is left out and described, never fatal.
    A bad line before the last is damage of another kind: ValueError naming the file and line."""
    path = Path(path)
    lines = path.read_bytes().split(b"\n")
    complete, tail = lines[:-1], lines[-1]   # `tail`: bytes after the last newline
    rows, torn = [], None
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if number == len(complete) and not tail.strip():
                torn = f"its last line ({number}) is not a complete JSON object"
                break
            raise ValueError(f"{path}:{number}: not a JSON object ({' '.join(str(e).split())[:80]})") from None
        rows.append(row)
    if tail.strip():
        torn = f"its last line ({len(complete) + 1}) was cut off ({len(tail)} bytes without a newline)"
    return rows, torn


def append_jsonl(path: Path, row: dict) -> None:
    """Add one row to a JSON-lines file by rewriting the whole file atomically (metrics.jsonl: a line per
    epoch, a few kB), so the file is always the old rows or the old rows plus this one. A torn tail
    left by an earlier writer is dropped in passing."""
    path = Path(path)
    rows = read_jsonl(path)[0] if path.exists() else []
    write_atomic(path, jsonl_bytes([*rows, row]))


def remove_stale_temporaries(folder: Path) -> None:
    """Remove temporaries left by killed runs: those whose writer process no longer exists."""
    if not Path(folder).is_dir():
        return
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}*"):
        name = _TMP_NAME.match(tmp.name)
        if name and not alive(int(name["pid"])):
            tmp.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
