"""A clip as the recipes find it, and its fingerprint (what the cache keys on to notice a changed file)."""
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Clip:
    clip_id: str
    source: Path                       # absolute path of the video (frames, probe)
    rel_source: str                    # the same, relative to --raw (what outputs record)
    split: str                         # "train", "val" or "test"
    label: int                         # index into the recipe's class list
    label_name: str
    audio_source: Path | None = None   # a separate audio file (CREMA-D's wav); None: audio from `source`
    rel_audio_source: str | None = None
    group: str = ""                    # clips that must stay in one split (a CREMA-D actor under --split speaker)
    part: str = ""                     # which part of a file many clips share it is (a MOSEI segment); "" = all

    def input_path(self, reads: str | None) -> Path | None:
        """The file a stage reads: "video", "audio" (the separate audio file when there is one) or None."""
        if reads == "audio" and self.audio_source is not None:
            return self.audio_source
        return self.source if reads else None


@dataclass(frozen=True)
class Rejected:
    """A file without an annotation, or an annotation without a file: reported, never silently dropped."""
    source: str     # relative to --raw
    reason: str


@dataclass(frozen=True)
class Discovery:
    clips: tuple[Clip, ...]
    classes: tuple[str, ...]
    rejected: tuple[Rejected, ...] = ()
    other_classes: int = 0    # clips of classes outside the class list (Kinetics-400 -> Kinetics-Sounds)


def fingerprint(path: Path | None, hash_content: bool = False) -> str:
    """Size and mtime (ns) of a file, plus the sha256 of its bytes with `hash_content` (a copy that
    keeps the bytes but not the mtime then stays cached). '' for a stage that reads no file."""
    if path is None:
        return ""
    st = path.stat()
    if hash_content:
        return f"{st.st_size}:{_content_digest(str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)}"
    return f"{st.st_size}:{st.st_mtime_ns}"


@lru_cache(maxsize=64)
def _content_digest(path: str, *stat: int) -> str:
    """sha256 of a file's bytes, once per (path, size, mtime, ctime, inode): any write changes the ctime.
    The feature files of CMU-MOSEI (gigabytes) are shared by every segment, and each segment's stages
    fingerprint them."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def seeded_fraction(seed: int, name: str) -> float:
    """A number in [0, 1) fixed by (seed, name): seeded splits that do not move when clips are added."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64
