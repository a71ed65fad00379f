"""What every recipe shares: the options, split lists, seeded splits, label lookup and the clip record."""
import re
from dataclasses import dataclass
from pathlib import Path

from rq.pipeline.clips import Clip, seeded_fraction

# Containers the folder and Kinetics recipes pick up (anything else is reported, not decoded).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".avi", ".flv", ".mov", ".mpg", ".mpeg",
                              ".ts", ".wmv", ".ogv", ".3gp"})
SPLIT_ALIASES = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}


class LayoutError(Exception):
    """The raw folder or an option file does not have the expected layout: a usage error."""


@dataclass(frozen=True)
class RecipeOptions:
    classes: Path | None = None           # one class name per line, replaces the recipe's list
    split_lists: tuple[str, ...] = ()     # "[SPLIT=]FILE": the clips of SPLIT (else told by FILE's name)
    split: str = "clip"                   # seeded split unit when no list: "clip" or "speaker" (CREMA-D)
    test_fraction: float = 0.1            # seeded split: share of clips (or speakers) in test
    seed: int = 0
    label_field: str = "label"            # wds: the json field holding a sample's label
    extract_to: Path | None = None        # wds: where videos read from tars are copied (the cache folder)


def read_split_lists(specs: tuple[str, ...]) -> dict[str, tuple[str, str | None]]:
    """name -> (split, label or None) from split lists as earlier papers ship them: lines
    `name,frames,label`, `name,label` or `name label` (a name may carry a folder and an extension)."""
    entries: dict[str, tuple[str, str | None]] = {}
    for spec in specs:
        split, path = _split_spec(spec)
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise LayoutError(f"--split-list {path}: {e.strerror}") from None
        for line in lines:
            if not line.strip() or line.startswith("#"):
                continue
            fields = [f.strip() for f in line.split(",")] if "," in line else line.strip().split(None, 1)
            name = Path(fields[0]).name
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS | {".wav"}:
                name = Path(name).stem
            entries[name] = (split, fields[-1] if len(fields) > 1 else None)
    return entries


def _split_spec(spec: str) -> tuple[str, str]:
    head, sep, rest = spec.partition("=")
    if sep and head in SPLIT_ALIASES:
        return SPLIT_ALIASES[head], rest
    words = re.findall(r"[a-z]+", Path(spec).name.lower())
    found = {SPLIT_ALIASES[w] for w in words if w in SPLIT_ALIASES}
    if len(found) != 1:
        raise LayoutError(f"--split-list {spec}: cannot tell its split from the name; write train={spec} or test={spec}")
    return found.pop(), spec


def seeded_split(options: RecipeOptions, unit: str) -> str:
    """'test' for a seeded `test_fraction` of units (clip ids or speakers), else 'train'."""
    return "test" if seeded_fraction(options.seed, unit) < options.test_fraction else "train"


def label_index(label: str, classes: tuple[str, ...]) -> int | None:
    """A label given as a class name or as an index into the class list; None if not a kept class."""
    if label in classes:
        return classes.index(label)
    if label.isdigit() and int(label) < len(classes):
        return int(label)
    return None


def make_clip(raw: Path, clip_id: str, path: Path, split: str, label: int, classes: tuple[str, ...],
              audio: Path | None = None) -> Clip:
    return Clip(clip_id, path.absolute(), path.relative_to(raw).as_posix(), split, label, classes[label],
                audio.absolute() if audio else None, audio.relative_to(raw).as_posix() if audio else None)
