"""WebDataset tars of video files, as video2dataset writes them (`00000.tar` holding `KEY.mp4`,
`KEY.json`, `KEY.txt`, ...): `rq preprocess wds --raw 'DIR/{00000..00009}.tar' --label-field label`.
The label is a field of each sample's json (a dotted path reaches into nested objects); classes come
from `--classes` or are the labels found, sorted; splits are seeded per sample (the layout has none).

The tars are untrusted: only regular members whose name is a plain `KEY.EXT` are read, a member
larger than MAX_MEMBER_BYTES is refused, and each video is copied once into the cache folder
(`CACHE/sources/TAR/KEY.EXT`), rewritten only when its bytes change, so the stages' fingerprints (and
the whole cache) hold across reruns."""
import json
import re
import tarfile
from pathlib import Path

import braceexpand

from rq.pipeline.atomic import write_atomic
from rq.pipeline.clips import Clip, Discovery, Rejected
from rq.pipeline.recipes.layout import VIDEO_EXTENSIONS, LayoutError, RecipeOptions, class_list, seeded_split

AUDIO_SECONDS = 10.0
FRAMES_PER_CLIP = 3
MAX_MEMBER_BYTES = 4 << 30
_KEY_EXT = re.compile(r"^(?P<key>[^./][^/]*?)\.(?P<ext>[A-Za-z0-9]+)$")


def tar_paths(raw: str | Path) -> list[Path]:
    """The tars a --raw names: a brace pattern of files, or a folder (every *.tar in it, sorted)."""
    raw = str(raw)
    if Path(raw).is_dir():
        paths = sorted(Path(raw).glob("*.tar"))
    else:
        paths = [Path(p) for p in braceexpand.braceexpand(raw)]
    missing = [p for p in paths if not p.is_file()]
    if not paths or missing:
        raise LayoutError(f"--raw {missing[0] if missing else raw}: no such tar")
    return paths


def discover(raw: Path, options: RecipeOptions) -> Discovery:
    if options.extract_to is None:
        raise LayoutError("the wds recipe needs a folder to copy the videos into (the cache folder)")
    samples, rejected = [], []
    for tar in tar_paths(raw):
        found, bad = _read_tar(tar, options.extract_to / "sources" / tar.stem)
        samples += found
        rejected += bad
    labelled = []
    for clip_id, video, meta in samples:
        label = _field(meta, options.label_field)
        if label is None:
            rejected.append(Rejected(clip_id, f"its json has no {options.label_field!r} field"))
        else:
            labelled.append((clip_id, video, str(label)))
    classes = class_list(options.classes) if options.classes else tuple(sorted({l for *_, l in labelled}))
    clips, other = [], 0
    for clip_id, video, label in labelled:
        if label not in classes:
            other += 1
            continue
        clips.append(Clip(clip_id, video.absolute(), clip_id, seeded_split(options, clip_id), classes.index(label),
                          label))
    return Discovery(tuple(clips), classes, tuple(rejected), other)


def _read_tar(tar: Path, folder: Path) -> tuple[list[tuple[str, Path, dict]], list[Rejected]]:
    """(clip id, copied video, its json) per sample with a video, and what could not be used."""
    videos, metas, rejected = {}, {}, []
    try:
        with tarfile.open(tar, "r:*") as archive:
            for member in archive:
                where = f"{tar.name}/{member.name}"
                m = _KEY_EXT.match(member.name)
                if not member.isfile() or m is None or "/" in member.name or ".." in member.name:
                    rejected.append(Rejected(where, "not a plain KEY.EXT file member"))
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    rejected.append(Rejected(where, f"larger than {MAX_MEMBER_BYTES >> 30} GiB"))
                    continue
                key, ext = m["key"], m["ext"].lower()
                if f".{ext}" in VIDEO_EXTENSIONS:
                    target = folder / f"{key}.{ext}"
                    write_atomic(target, archive.extractfile(member).read())   # untouched when unchanged
                    videos[key] = target
                elif ext == "json":
                    try:
                        metas[key] = json.loads(archive.extractfile(member).read())
                    except ValueError as e:
                        rejected.append(Rejected(where, f"not valid JSON ({e})"))
    except (tarfile.TarError, OSError, EOFError) as e:
        rejected.append(Rejected(tar.name, f"unreadable tar ({type(e).__name__}: {e})"))
    samples = []
    for key, video in sorted(videos.items()):
        meta = metas.get(key)
        if not isinstance(meta, dict):
            rejected.append(Rejected(f"{tar.name}/{video.name}", "no json object for this sample"))
        else:
            samples.append((f"{tar.stem}/{key}", video, meta))
    return samples, rejected


def _field(meta: dict, path: str):
    value = meta
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None
