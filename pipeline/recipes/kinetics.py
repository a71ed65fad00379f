"""Kinetics as downloaded: `train/` and `val/` folders of `{youtube_id}_{start:06d}_{end:06d}.mp4`
(optionally in class sub-folders), annotation CSVs `annotations/{train,val}.csv` or `{train,val}.csv`
(columns label, youtube_id, time_start, time_end, split), or split lists instead of the CSVs.
Keeps the 31 Kinetics-Sounds classes (or `--classes`); the `val/` folder becomes the test split (a
split list may name rq's own val split; otherwise it is carved out of train)."""
import csv
from pathlib import Path

from rq.pipeline.clips import Discovery, Rejected
from rq.pipeline.recipes.layout import (VIDEO_EXTENSIONS, LayoutError, RecipeOptions, class_list, label_index, make_clip,
                                        read_split_lists)

AUDIO_SECONDS = 10.0
FRAMES_PER_CLIP = 3
FOLDERS = {"train": "train", "test": "val"}


def discover(raw: Path, options: RecipeOptions) -> Discovery:
    if not any((raw / folder).is_dir() for folder in FOLDERS.values()):
        raise LayoutError(f"{raw}: not a Kinetics download (no train/ or val/ folder)")
    classes = class_list(options.classes)
    files, duplicates = {}, []
    for split, folder in FOLDERS.items():
        files[split], dups = _videos(raw / folder)
        duplicates += dups
    listed, rejected = _from_split_lists(options) if options.split_lists else _from_annotations(raw)
    # The same clip in train and val: whichever split it went to would be wrong for the other.
    for name in sorted(set(listed.get("train", {})) & set(listed.get("test", {}))):
        for split in FOLDERS:
            del listed[split][name]
            files[split].pop(name, None)
        rejected.append(Rejected(name, "annotated in both train and val: left out"))
    clips, other = [], 0
    for split, entries in listed.items():
        for name, label in sorted(entries.items()):
            index = label_index(label, classes)
            path = _take(files, name, split)
            if index is None:
                other += 1
            elif path is None:
                rejected.append(Rejected(f"{FOLDERS.get(split, 'train')}/{name}.mp4", "annotated, but there is no such file"))
            else:
                clips.append(make_clip(raw, name, path, split, index, classes))
    conflicted = {r.source for r in rejected}   # left out on purpose, already reported
    rejected += [Rejected(p.relative_to(raw).as_posix(), "not in the annotations")
                 for left in files.values() for name, p in left.items() if name not in conflicted]
    rejected += [Rejected(p.relative_to(raw).as_posix(), f"same name as {kept.relative_to(raw).as_posix()}, "
                          "which is used") for p, kept in duplicates]
    return Discovery(tuple(clips), classes, tuple(sorted(rejected, key=lambda r: r.source)), other)


def _take(files: dict[str, dict[str, Path]], name: str, split: str) -> Path | None:
    """The file of `name`, looked up in the folder of its split first (a val clip, carved out of
    train by a split list, in train/), then in the other folder; taken out of `files`."""
    first = "test" if split == "test" else "train"
    return files[first].pop(name, None) or files["train" if first == "test" else "test"].pop(name, None)


def _videos(folder: Path) -> tuple[dict[str, Path], list[tuple[Path, Path]]]:
    """name (file stem) -> path of every video under `folder`, class sub-folders included; and the
    (path, kept path) of every further file with a name already taken (the first in sorted order wins)."""
    by_name: dict[str, Path] = {}
    duplicates = []
    if folder.is_dir():
        for p in sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()):
            if p.stem in by_name:
                duplicates.append((p, by_name[p.stem]))
            else:
                by_name[p.stem] = p
    return by_name, duplicates


def _from_annotations(raw: Path) -> tuple[dict[str, dict[str, str]], list[Rejected]]:
    """split -> {file stem: label} from the annotation CSVs, and the clips left out for conflicting rows."""
    listed: dict[str, dict[str, str]] = {}
    conflicts: list[Rejected] = []
    for split, folder in FOLDERS.items():
        path = next((p for p in (raw / "annotations" / f"{folder}.csv", raw / f"{folder}.csv") if p.is_file()), None)
        if path is None:
            if (raw / folder).is_dir():
                raise LayoutError(f"{raw}: no annotations/{folder}.csv (or {folder}.csv) for the {folder}/ folder;"
                                  " give the annotation CSVs or --split-list")
            continue
        listed[split], left_out = _read_csv(path, path.relative_to(raw).as_posix())
        conflicts += left_out
    return listed, conflicts


def _read_csv(path: Path, rel: str) -> tuple[dict[str, str], list[Rejected]]:
    """{file stem: label} of an annotation CSV (a UTF-8 byte-order mark is fine); a clip whose rows give
    two different labels is left out, with a Rejected record. An empty or header-only file: LayoutError."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        named = [(f"{r['youtube_id']}_{int(r['time_start']):06d}_{int(r['time_end']):06d}", r["label"]) for r in rows]
    except (KeyError, ValueError, TypeError) as e:
        raise LayoutError(f"{path}: not a Kinetics annotation CSV (columns label,youtube_id,time_start,"
                          f"time_end,split): {e}") from None
    if not named:
        raise LayoutError(f"{path}: no annotation rows (the file is empty or holds only a header)")
    labels: dict[str, set[str]] = {}
    for name, label in named:
        labels.setdefault(name, set()).add(label)
    conflicts = [Rejected(name, f"{rel} gives it {len(ls)} labels ({', '.join(sorted(ls))}): left out")
                 for name, ls in sorted(labels.items()) if len(ls) > 1]
    return {name: ls.pop() for name, ls in labels.items() if len(ls) == 1}, conflicts


def _from_split_lists(options: RecipeOptions) -> tuple[dict[str, dict[str, str]], list[Rejected]]:
    listed: dict[str, dict[str, str]] = {"train": {}, "val": {}, "test": {}}
    entries, conflicts = read_split_lists(options.split_lists)
    for name, (split, label) in entries.items():
        if label is None:
            raise LayoutError(f"--split-list: the line of {name} has no label (need `name,frames,label` or `name label`)")
        listed[split][name] = label
    return listed, conflicts
