"""Shard generations: how `rq preprocess` rewrites a split's shards while others may be reading them.

A rewritten split never overwrites the shards the committed manifest lists: its new shards get other
names (generation g: `train-g{g}-000000.tar`; generation 0 is the plain `train-000000.tar`), and the
new manifest, written atomically after them, commits the new set. Until
that moment the old manifest and its shards are untouched (a kill or a full disk leaves them usable);
from then on readers that open the folder see the new set. Files the new manifest no longer lists
are deleted afterwards, except a generation some reader still holds: a reader (`rq train`, `rq eval`)
takes a shared lock on the generations it opened and keeps it while it runs, so it reads one complete
set from start to end, never a mix; the next `rq preprocess` removes what was kept for it.

Locks are `flock`s on small files `.rq-read-{split}-g{g}` in the folder: the kernel releases them when
a reader dies, so a killed reader never blocks a deletion for ever."""
import fcntl
import os
import re
from pathlib import Path

SHARD_NAME = re.compile(r"^(?P<split>[a-z]+)-(?:g(?P<gen>\d+)-)?(?P<index>\d{6})\.tar$")


def shard_name(split: str, generation: int, index: int) -> str:
    return f"{split}-{index:06d}.tar" if generation == 0 else f"{split}-g{generation}-{index:06d}.tar"


def generation_of(name: str) -> tuple[str, int] | None:
    """(split, generation) of a shard file name rq writes; None for any other name."""
    m = SHARD_NAME.match(name)
    return (m["split"], int(m["gen"] or 0)) if m else None


def _generations(names) -> set[tuple[str, int]]:
    return {g for g in map(generation_of, names) if g is not None}


def next_generation(out: Path, split: str, committed: dict | None) -> int:
    """The generation a rewrite of `split` writes: the lowest one that neither the committed manifest
    lists nor a reader holds. Files of any other generation are unlisted and unread, free to overwrite;
    and the same inputs keep giving the same names (a setting changed and changed back is generation
    0 again, byte-identical to the first run, once no reader holds it)."""
    taken = {g for s, g in _generations(s["name"] for s in (committed or {}).get("shards", [])) if s == split}
    generation = 0
    while generation in taken or _held(_lock_path(out, split, generation)):
        generation += 1
    return generation


def _held(lock: Path) -> bool:
    with _exclusive(lock) as free:
        return not free


def _lock_path(out: Path, split: str, generation: int) -> Path:
    return Path(out) / f".rq-read-{split}-g{generation}"


def _lock_of(path: Path) -> tuple[str, int]:
    split, _, gen = path.name.removeprefix(".rq-read-").rpartition("-g")
    return split, int(gen) if gen.isdigit() else -1


class ReaderHold:
    """Shared locks on the generations of the shards a reader opened; released by close(), when the
    object is collected, or when the process ends. A folder that cannot be locked (read-only) is read
    without: no rq preprocess can be rewriting it."""

    def __init__(self, folder: Path, names: list[str]):
        self.fds: list[int] = []
        for split, gen in sorted(_generations(names)):
            try:
                fd = os.open(_lock_path(folder, split, gen), os.O_RDONLY | os.O_CREAT, 0o644)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)   # waits only while a writer deletes that generation
            except OSError:
                os.close(fd)
                continue
            self.fds.append(fd)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []

    def __del__(self):
        self.close()

    def __getstate__(self):
        return {"fds": []}   # a spawned loader worker holds nothing: the process that opened the source does


def retire_superseded(out: Path, listed: set[str]) -> list[str]:
    """After a manifest listing `listed` was committed: delete every other shard file of rq's naming,
    unless a reader holds its generation. Returns the names kept for readers."""
    out = Path(out)
    kept = []
    stale = {}
    for path in out.glob("*.tar"):
        gen = generation_of(path.name)
        if gen is not None and path.name not in listed:
            stale.setdefault(gen, []).append(path)
    in_use = _generations(listed)
    for (split, gen), paths in sorted(stale.items()):
        if (split, gen) in in_use:   # a shorter rewrite of the same generation: its surplus index
            for path in paths:
                path.unlink(missing_ok=True)
            continue
        with _exclusive(_lock_path(out, split, gen)) as free:
            if free:
                for path in paths:
                    path.unlink(missing_ok=True)
            else:
                kept += sorted(p.name for p in paths)
    present = _generations(p.name for p in out.glob("*.tar"))
    for lock in out.glob(".rq-read-*"):
        if _lock_of(lock) not in present:
            with _exclusive(lock) as free:
                if free:
                    lock.unlink(missing_ok=True)
    return kept


class _exclusive:
    """`with _exclusive(lock) as free`: free is whether no reader holds `lock` (then we hold it)."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def __enter__(self) -> bool:
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return True      # never read by a locking reader
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError:
            return True      # no locks on this file system: nothing to wait for
        return True

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
