"""Any folder of class sub-folders: `DIR/{split}/{class}/*` (split = train, test or val; val is the
test split unless a test/ folder exists too, then it is the validation split) or
`DIR/{class}/*` with a seeded `--test-fraction`. Any container ffmpeg reads; classes sorted by name
unless `--classes` gives the list (files of other classes are then counted, not decoded)."""
from pathlib import Path

from rq.pipeline.clips import Discovery, Rejected
from rq.pipeline.recipes.layout import (LIST_SPLITS, SPLIT_ALIASES, VIDEO_EXTENSIONS, LayoutError, RecipeOptions,
                                        class_list, make_clip, seeded_split)

AUDIO_SECONDS = 10.0
FRAMES_PER_CLIP = 3


def discover(raw: Path, options: RecipeOptions) -> Discovery:
    top = _subfolders(raw)
    # val/ is the test split, as in Kinetics, unless there is a test/ folder too: then it is val.
    aliases = {**SPLIT_ALIASES, **LIST_SPLITS} if (raw / "test").is_dir() else SPLIT_ALIASES
    if top and all(d.name in aliases for d in top):
        groups = [(aliases[s.name], c) for s in top for c in _subfolders(s)]
    else:
        groups = [(None, c) for c in top]
    if not groups:
        raise LayoutError(f"{raw}: no class folders (expected DIR/{{class}}/* or DIR/{{split}}/{{class}}/*)")
    classes = class_list(options.classes) if options.classes else \
        tuple(sorted({folder.name for _, folder in groups}))
    clips, rejected, other = [], [], 0
    for split, folder in groups:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            clip_id = path.relative_to(raw).as_posix()
            if folder.name not in classes:
                other += 1
            elif path.suffix.lower() not in VIDEO_EXTENSIONS:
                rejected.append(Rejected(clip_id, f"not a video file extension ({path.suffix or 'none'})"))
            else:
                clips.append(make_clip(raw, clip_id, path, split or seeded_split(options, clip_id),
                                       classes.index(folder.name), classes))
    return Discovery(tuple(clips), classes, tuple(rejected), other)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
