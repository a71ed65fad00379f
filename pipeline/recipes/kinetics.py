"""Kinetics as downloaded: `train/` and `val/` folders of `{youtube_id}_{start:06d}_{end:06d}.mp4`
(optionally in class sub-folders), annotation CSVs `annotations/{train,val}.csv` or `{train,val}.csv`
(columns label, youtube_id, time_start, time_end, split), or split lists instead of the CSVs.
Keeps the 31 Kinetics-Sounds classes (or `--classes`); the `val/` folder becomes the test split (a
split list may name rq's own val split; otherwise it is carved out of train)."""
import csv
from pathlib import Path

from rq.manifests import read_class_list

from rq.pipeline.clips import Discovery, Rejected
from rq.pipeline.recipes.layout import VIDEO_EXTENSIONS, LayoutError, RecipeOptions, label_index, make_clip, read_split_lists

AUDIO_SECONDS = 10.0
FRAMES_PER_CLIP = 3
FOLDERS = {"train": "train", "test": "val"}


def discover(raw: Path, options: RecipeOptions) -> Discovery:
    if not any((raw / folder).is_dir() for folder in FOLDERS.values()):
        raise LayoutError(f"{raw}: not a Kinetics download (no train/ or val/ folder)")
    classes = tuple(read_class_list(options.classes))
    files, duplicates = {}, []
    for split, folder in FOLDERS.items():
        files[split], dups = _videos(raw / folder)
        duplicates += dups
    listed = _from_split_lists(options) if options.split_lists else _from_annotations(raw)
    clips, rejected, other = [], [], 0
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
    rejected += [Rejected(p.relative_to(raw).as_posix(), "not in the annotations")
                 for left in files.values() for p in left.values()]
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


def _from_annotations(raw: Path) -> dict[str, dict[str, str]]:
    """split -> {file stem: label} from the annotation CSVs."""
    listed: dict[str, dict[str, str]] = {}
    for split, folder in FOLDERS.items():
        path = next((p for p in (raw / "annotations" / f"{folder}.csv", raw / f"{folder}.csv") if p.is_file()), None)
        if path is None:
            if (raw / folder).is_dir():
                raise LayoutError(f"{raw}: no annotations/{folder}.csv (or {folder}.csv) for the {folder}/ folder;"
                                  " give the annotation CSVs or --split-list")
            continue
        listed[split] = _read_csv(path)
    return listed


def _read_csv(path: Path) -> dict[str, str]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        return {f"{r['youtube_id']}_{int(r['time_start']):06d}_{int(r['time_end']):06d}": r["label"] for r in rows}
    except (KeyError, ValueError, TypeError) as e:
        raise LayoutError(f"{path}: not a Kinetics annotation CSV (columns label,youtube_id,time_start,"
                          f"time_end,split): {e}") from None


def _from_split_lists(options: RecipeOptions) -> dict[str, dict[str, str]]:
    listed: dict[str, dict[str, str]] = {"train": {}, "val": {}, "test": {}}
    for name, (split, label) in read_split_lists(options.split_lists).items():
        if label is None:
            raise LayoutError(f"--split-list: the line of {name} has no label (need `name,frames,label` or `name label`)")
        listed[split][name] = label
    return listed
