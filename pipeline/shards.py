"""The shard writer: deterministic WebDataset tars exactly as docs/shards.md describes.

A split's samples go in a seeded order (each clip's place is fixed by a hash of (seed, clip id), so
classes mix and adding a clip does not reorder the others), are cut into shards of at most
`--shard-size` MB, and are written only when the split's content (the ordered list of member hashes
and the shard size) differs from what the previous manifest recorded; otherwise the files stay
untouched, mtime included. A rewrite writes a new generation of names (rq.pipeline.generations)."""
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rq.pipeline.atomic import atomic_file
from rq.pipeline.cache import Cache, DamagedEntry
from rq.pipeline.generations import generation_of, next_generation, shard_name
from rq.pipeline.runner import ClipResult

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_BLOCK = tarfile.BLOCKSIZE


def sample_key(clip_id: str) -> str:
    """Unique, dot-free key: the clip id made safe and cut to 80 chars, plus 10 hex of its sha1."""
    return f"{_UNSAFE.sub('_', clip_id)[:80]}_{hashlib.sha1(clip_id.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Member:
    suffix: str
    sha256: str
    size: int
    stage: str = ""          # "" for members made here (json, cls); else the cache entry holding the bytes
    cache_key: str = ""
    inline: bytes = b""
    cached_as: str = ""      # its name in the cache entry when that differs (a frame renamed or repeated)


@dataclass(frozen=True)
class Sample:
    clip_id: str
    key: str
    members: tuple[Member, ...]   # in tar order: json, cls, frames (time order), spectrogram


def make_sample(result: ClipResult, frame_members: int, settings: dict) -> Sample:
    """The sample of a processed clip: metadata and class index made here, frames and spectrogram
    referenced in the cache (read only when a shard is actually written). `frame_members` is the
    dataset's `frames_per_sample`: a clip with fewer frames repeats its last one up to that many
    members, so that every sample has the same member names (HuggingFace `datasets` needs that); the
    json says how many are real, and the trainer picks among those only."""
    clip, frames, spec = result.clip, settings["frames"], settings["spectrogram"]
    frame_meta = result.heads["frames"].meta or {}   # real time of each frame, and why some were capped
    stored = stored_members(result)
    real = [m for m in stored if m.stage == "frames"]
    meta = {"clip_id": clip.clip_id, "label": clip.label, "label_name": clip.label_name, "split": clip.split,
            "source": clip.rel_source, "duration": result.probe.get("duration"),
            "n_frames": len(real), "frames_padded": max(0, frame_members - len(real)), "fps": frames.fps,
            "frame_decode": frame_meta.get("decode", frames.frame_decode), "frame_pts": frame_meta.get("times"),
            "sample_rate": settings["audio"].sample_rate, "audio_seconds": spec.audio_seconds,
            "stft": {"n_fft": spec.n_fft, "win_length": spec.win_length, "hop_length": spec.hop_length}}
    if frame_meta.get("note"):
        meta["frames_note"] = frame_meta["note"]
    if clip.rel_audio_source:
        meta["audio_source"] = clip.rel_audio_source
    rest = [m for m in stored if m.stage != "frames"]
    return build_sample(result, meta, padded_frames(real, frame_members) + rest)


def stored_members(result: ClipResult) -> list[Member]:
    """The members a processed clip's shard stages left in the cache, in stage order."""
    return [Member(name, sha, size, stage, result.keys[stage])
            for stage, head in result.heads.items() for name, size, sha in head.members]


def build_sample(result: ClipResult, meta: dict, stored: list[Member] | None = None) -> Sample:
    """A clip's sample: its json `meta` and class index made here, then its cached members."""
    clip = result.clip
    made = [_inline("json", json.dumps(meta, separators=(",", ":")).encode()),
            _inline("cls", str(clip.label).encode())]
    stored = stored if stored is not None else stored_members(result)
    return Sample(clip.clip_id, sample_key(clip.clip_id), tuple(made + stored))


def frames_per_sample(results: Sequence[ClipResult]) -> int:
    """The frame members of every sample of a dataset: the most frames any of its clips has."""
    return max((len(r.heads["frames"].members) for r in results if "frames" in r.heads), default=0)


def padded_frames(real: list[Member], count: int) -> list[Member]:
    """The frame members `f0000.jpg` ... of a sample with `count` frame members (at least the real
    ones): the real frames in time order, then copies of the last one. Names are zero-padded to one
    width for the whole dataset (4 digits, more from 10,000 frames), so sorting keeps time order."""
    total = max(count, len(real))
    digits = max(4, len(str(total - 1)))
    members = []
    for i, m in enumerate(real + real[-1:] * (total - len(real))):
        name = f"f{i:0{digits}d}.jpg"
        members.append(m if name == m.suffix else replace(m, suffix=name, cached_as=m.suffix))
    return members


def _inline(suffix: str, data: bytes) -> Member:
    return Member(suffix, hashlib.sha256(data).hexdigest(), len(data), inline=data)


def shuffled(samples: Sequence[Sample], seed: int) -> list[Sample]:
    return sorted(samples, key=lambda s: hashlib.sha256(f"{seed}:{s.clip_id}".encode()).digest())


def split_content(samples: Sequence[Sample], shard_bytes: int) -> str:
    """The identity of a split's shards: shard size and, in order, every sample's members and hashes."""
    text = json.dumps([shard_bytes, [[s.key, [[m.suffix, m.sha256] for m in s.members]] for s in samples]],
                      separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SplitOutcome:
    entry: dict          # the split's manifest entry
    written: int
    unchanged: int


def write_split(out: Path, split: str, samples: Sequence[Sample], shard_bytes: int, cache: Cache,
                committed: dict | None) -> SplitOutcome:
    """Write the split's shards (samples already in order) unless the committed manifest's entry shows
    the same content and its files are all present. A rewrite goes to a new generation
    (rq.pipeline.generations), so the committed shards stay untouched until the caller commits the new
    manifest; if the rewrite fails (a full disk), the shards it wrote are removed again."""
    content = split_content(samples, shard_bytes)
    same = bool(committed) and committed.get("content") == content
    if same and all(_size(out / s["name"]) == s.get("bytes") for s in committed["shards"]):
        return SplitOutcome(committed, 0, len(committed["shards"]))
    # Same content with files missing or damaged: the same bytes again under the committed names (a
    # reader sees the same bytes either way). New content: a new generation beside the committed one.
    generation = _generation(committed) if same else next_generation(out, split, committed)
    shards: list[dict] = []
    try:
        for i, group in enumerate(_groups(samples, shard_bytes)):
            shards.append(_write_shard(out / shard_name(split, generation, i), group, cache))
    except BaseException:
        for shard in shards if not same else ():   # a new generation's files: nothing lists them
            (out / shard["name"]).unlink(missing_ok=True)
        raise
    entry = {"samples": len(samples), "bytes": sum(s["bytes"] for s in shards), "content": content,
             "shards": shards}
    return SplitOutcome(entry, len(shards), 0)


def _generation(entry: dict) -> int:
    names = [generation_of(s["name"]) for s in entry["shards"]]
    return names[0][1] if names and names[0] else 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _tar_bytes(sample: Sample) -> int:
    """Bytes a sample takes in a tar: per member a header (two more for a name over 100 chars) + padded data."""
    total = 0
    for m in sample.members:
        name = f"{sample.key}.{m.suffix}"
        total += _BLOCK * (3 if len(name) > 100 else 1) + -(-m.size // _BLOCK) * _BLOCK
    return total


def _groups(samples: Sequence[Sample], shard_bytes: int) -> list[list[Sample]]:
    """Consecutive samples cut into shards of at most `shard_bytes` bytes on disk (a sample larger than that
    gets a shard of its own)."""
    groups: list[list[Sample]] = []
    size = 0
    for sample in samples:
        n = _tar_bytes(sample)
        if not groups or _padded(size + n) > shard_bytes and groups[-1]:
            groups.append([])
            size = 0
        groups[-1].append(sample)
        size += n
    return groups


def _padded(size: int) -> int:
    """A tar's file size holding `size` bytes of members: two end blocks, padded to a whole record."""
    return -(-(size + 2 * _BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


class _Hashing(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to the real one."""

    def __init__(self, f):
        self.f, self.sha, self.n = f, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.n += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.n


def _write_shard(path: Path, samples: Sequence[Sample], cache: Cache) -> dict:
    with atomic_file(path) as f:
        sink = _Hashing(f)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for sample in samples:
                for member, data in _member_bytes(sample, cache):
                    info = tarfile.TarInfo(f"{sample.key}.{member.suffix}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    tar.addfile(info, io.BytesIO(data))
    return {"name": path.name, "samples": len(samples), "bytes": sink.n, "sha256": sink.sha.hexdigest()}


def _member_bytes(sample: Sample, cache: Cache):
    entries: dict[tuple[str, str], dict[str, bytes]] = {}
    for m in sample.members:
        if not m.stage:
            yield m, m.inline
            continue
        if (m.stage, m.cache_key) not in entries:
            # {} when the entry is missing or its bytes fail their hashes
            entries[m.stage, m.cache_key] = cache.read(m.stage, m.cache_key) or {}
        data = entries[m.stage, m.cache_key].get(m.cached_as or m.suffix)
        if data is None or hashlib.sha256(data).hexdigest() != m.sha256:
            raise DamagedEntry(sample.clip_id, m.stage, m.cache_key)
        yield m, data
