"""The per-(clip, stage) cache: content-addressed entries, each written atomically.

Key = sha256(stage name, stage code version, canonical settings, fingerprint of the file the stage
reads, keys of the stages it needs). A changed setting, code version or input file gives a new key;
the old entry is simply never read again.

Entry format (no pickle): b"RQC1", a 4-byte big-endian header length, a JSON header
{"members": [[suffix, size, sha256], ...], "error": null | "one-line reason", "meta": null | {...}}
(meta: a stage's small facts, e.g. the frames' times), then the members' bytes back to back. A
failed clip is cached as an entry with an error and no members, so a rerun does not decode a
known-bad file again. The header alone says what an entry holds (and the member hashes
the shard writer compares), so a rerun with nothing to compute reads a few hundred bytes per entry."""
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from rq.pipeline.atomic import atomic_file, remove_stale_temporaries

MAGIC = b"RQC1"
_PREFIX = struct.Struct(">4sI")


def stage_key(name: str, version: int, settings_text: str, fingerprint: str, upstream: list[str]) -> str:
    text = json.dumps([name, version, settings_text, fingerprint, upstream], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Head:
    """What an entry holds, without its bytes."""
    members: tuple[tuple[str, int, str], ...]   # (suffix, size, sha256)
    error: str | None = None
    meta: dict | None = None


class DamagedEntry(Exception):
    """A cache entry that no longer holds what its header promised (disk error, a stray edit)."""

    def __init__(self, clip_id: str, stage: str, key: str):
        self.clip_id, self.stage, self.key = clip_id, stage, key
        super().__init__(f"damaged cache entry of {clip_id} ({stage})")


class Cache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"   # temporaries in one folder, cleaned of killed runs' leftovers

    def clean(self) -> None:
        remove_stale_temporaries(self.tmp)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    def head(self, stage: str, key: str) -> Head | None:
        """The entry's header, or None when there is no complete, well-formed entry. (Called for every
        stage of every clip on a rerun: plain string paths and fstat, no pathlib.)"""
        try:
            with open(os.path.join(self.root, stage, key[:2], key), "rb") as f:
                magic, length = _PREFIX.unpack(f.read(_PREFIX.size))
                header = json.loads(f.read(length))
                size = os.fstat(f.fileno()).st_size
            head = Head(tuple((n, s, h) for n, s, h in header["members"]), header["error"], header.get("meta"))
            if size != _PREFIX.size + length + sum(s for _, s, _ in head.members):
                return None
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            return None
        return head if magic == MAGIC else None

    def read(self, stage: str, key: str) -> dict[str, bytes] | None:
        """The members of an entry, checked against their hashes; None when missing or damaged."""
        try:
            data = self.path(stage, key).read_bytes()
            magic, length = _PREFIX.unpack_from(data)
            header = json.loads(data[_PREFIX.size:_PREFIX.size + length])
        except (OSError, ValueError, struct.error):
            return None
        members, pos = {}, _PREFIX.size + length
        for name, size, sha in header["members"]:
            blob = data[pos:pos + size]
            if len(blob) != size or hashlib.sha256(blob).hexdigest() != sha:
                return None
            members[name] = blob
            pos += size
        return members if magic == MAGIC and pos == len(data) else None

    def remove(self, stage: str, key: str) -> None:
        self.path(stage, key).unlink(missing_ok=True)

    def put(self, stage: str, key: str, members: dict[str, bytes], meta: dict | None = None) -> Head:
        head = Head(tuple((n, len(b), hashlib.sha256(b).hexdigest()) for n, b in sorted(members.items())), None, meta)
        self._write(stage, key, head, [members[n] for n, _, _ in head.members])
        return head

    def put_error(self, stage: str, key: str, reason: str) -> Head:
        head = Head((), reason)
        self._write(stage, key, head, [])
        return head

    def _write(self, stage: str, key: str, head: Head, blobs: list[bytes]) -> None:
        header = json.dumps({"members": [list(m) for m in head.members], "error": head.error, "meta": head.meta},
                            separators=(",", ":")).encode()
        with atomic_file(self.path(stage, key), tmp_dir=self.tmp) as f:
            f.write(_PREFIX.pack(MAGIC, len(header)))
            f.write(header)
            for blob in blobs:
                f.write(blob)
