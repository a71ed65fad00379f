"""What every recipe shares: the options, split lists, seeded splits, label lookup and the clip record;
and what `rq preprocess` does to every recipe's discovery: the validation split carved out of train,
and the class list cut down to the classes that have clips."""
import re
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from rq.manifests import read_class_list
from rq.pipeline.clips import Clip, Discovery, Rejected, seeded_fraction

# Containers the folder and Kinetics recipes pick up (anything else is reported, not decoded).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".avi", ".flv", ".mov", ".mpg", ".mpeg",
                              ".ts", ".wmv", ".ogv", ".3gp"})
# Split folder names. A raw `val/` folder is the TEST split (Kinetics' public `val/` is what papers test
# on); rq's own validation split is carved out of train (`carve_validation`).
SPLIT_ALIASES = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}
# Split names a --split-list may carry: there, val means rq's validation split.
LIST_SPLITS = {"train": "train", "test": "test", "val": "val", "valid": "val", "validation": "val"}


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
    val_fraction: float = 0.1             # share of the train clips (or speakers) moved to val


def class_list(path: Path | None) -> tuple[str, ...]:
    """The `--classes` file's names (or the built-in Kinetics-Sounds list); LayoutError when it has none."""
    names = tuple(read_class_list(path))
    if not names:
        raise LayoutError(f"--classes {path}: no class names in it (one name per line)")
    return names


def read_split_lists(specs: tuple[str, ...]) -> tuple[dict[str, tuple[str, str | None]], list[Rejected]]:
    """name -> (split, label or None) from split lists as earlier papers ship them: lines
    `name,frames,label`, `name,label` or `name label` (a name may carry a folder and an extension).
    A name listed twice with another split or label is left out, with a Rejected record saying why."""
    entries: dict[str, tuple[str, str | None]] = {}
    where: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    for spec in specs:
        split, path = _split_spec(spec)
        try:
            lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
        except OSError as e:
            raise LayoutError(f"--split-list {path}: {e.strerror}") from None
        rows = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
        if not rows:
            raise LayoutError(f"--split-list {path}: no clips listed (the file is empty)")
        for number, line in rows:
            fields = [f.strip() for f in line.split(",")] if "," in line else line.strip().split(None, 1)
            name = Path(fields[0]).name
            if Path(name).suffix.lower() in VIDEO_EXTENSIONS | {".wav"}:
                name = Path(name).stem
            entry, here = (split, fields[-1] if len(fields) > 1 else None), f"{path}:{number}"
            if name in entries and entries[name] != entry and name not in conflicts:
                conflicts[name] = f"{where[name]} and {here} disagree ({_entry(entries[name])} vs {_entry(entry)})"
            entries.setdefault(name, entry)
            where.setdefault(name, here)
    return ({n: e for n, e in entries.items() if n not in conflicts},
            [Rejected(n, f"{why}: left out") for n, why in sorted(conflicts.items())])


def _entry(entry: tuple[str, str | None]) -> str:
    return f"{entry[0]} {entry[1]}" if entry[1] is not None else entry[0]


def _split_spec(spec: str) -> tuple[str, str]:
    head, sep, rest = spec.partition("=")
    if sep and head in LIST_SPLITS:
        return LIST_SPLITS[head], rest
    words = re.findall(r"[a-z]+", Path(spec).name.lower())
    found = {LIST_SPLITS[w] for w in words if w in LIST_SPLITS}
    if len(found) != 1:
        raise LayoutError(f"--split-list {spec}: cannot tell its split from the name; write train={spec}, "
                          f"val={spec} or test={spec}")
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
              audio: Path | None = None, group: str = "") -> Clip:
    return Clip(clip_id, path.absolute(), path.relative_to(raw).as_posix(), split, label, classes[label],
                audio.absolute() if audio else None, audio.relative_to(raw).as_posix() if audio else None, group)


def share(fraction: float, n: int) -> int:
    """round(fraction * n), halves rounded up (Python's round() would send 0.5 to 0)."""
    return int(fraction * n + 0.5)


def carve_validation(found: Discovery, options: RecipeOptions) -> Discovery:
    """Move a seeded `val_fraction` of the train clips into a 'val' split, unless a split list already
    named val clips. Clips with a `group` (CREMA-D actors under --split speaker) move group by group:
    exactly share(val_fraction, train groups) of them, so no actor is in both train and val. Otherwise
    the carve is stratified: of each class, exactly share(val_fraction, its train clips). Which ones is
    fixed by a hash of (seed, clip id or group), so the choice is the same on every run."""
    if options.val_fraction <= 0 or any(c.split == "val" for c in found.clips):
        return found
    train = [c for c in found.clips if c.split == "train"]
    def rank(unit: str) -> float:
        return seeded_fraction(options.seed, f"val:{unit}")
    if any(c.group for c in train):
        groups = sorted({c.group for c in train}, key=rank)
        chosen = set(groups[:share(options.val_fraction, len(groups))])
        moved = {c.clip_id for c in train if c.group in chosen}
    else:
        by_class: dict[int, list[str]] = defaultdict(list)
        for c in train:
            by_class[c.label].append(c.clip_id)
        moved = {clip_id for ids in by_class.values()
                 for clip_id in sorted(ids, key=rank)[:share(options.val_fraction, len(ids))]}
    return replace(found, clips=tuple(replace(c, split="val") if c.clip_id in moved else c for c in found.clips))


def keep_classes_with_clips(found: Discovery) -> tuple[Discovery, list[str]]:
    """The class list cut to the classes that have at least one clip (in the list's order), labels
    renumbered to match; and the names of the listed classes that have none. A classifier is then
    never trained over classes the data cannot show it (the Kinetics-Sounds list has 31 names; a
    subset download or a generated dataset has clips of only some)."""
    present = {c.label for c in found.clips}
    kept = [i for i in range(len(found.classes)) if i in present]
    empty = [name for i, name in enumerate(found.classes) if i not in present]
    if not empty or not kept:
        return found, empty
    index = {old: new for new, old in enumerate(kept)}
    clips = tuple(replace(c, label=index[c.label]) for c in found.clips)
    return replace(found, clips=clips, classes=tuple(found.classes[i] for i in kept)), empty
