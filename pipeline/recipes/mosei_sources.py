"""Where CMU-MOSEI's segments come from: the CMU-MultimodalSDK's computational sequences, or
MultiBench's pickle (`mosei_senti_data.pkl`, `mosei_senti_data_noalign.pkl`).

A sample is one labelled segment of a video. From the SDK: the rows of `CMU_MOSEI_Labels.csd` ("All
Labels": per segment its interval and 7 values, sentiment in [-3, 3] then six emotions); the features
are read per segment by the stages (pipeline/stages/features.py). From the pickle: its samples, each
copied once into the cache folder as a small .npz (`CACHE/sources/<name>/<split>/<index>.npz`,
rewritten only when its bytes change, so the stages' fingerprints hold across reruns); an index of them
beside, keyed on the pickle's size and mtime, spares a rerun from reading the pickle again."""
import io
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rq.pipeline.atomic import write_atomic
from rq.pipeline.clips import Clip, Discovery, Rejected, fingerprint, seeded_fraction
from rq.pipeline.csd import CsdError, open_csd
from rq.pipeline.recipes.layout import LayoutError
from rq.pipeline.safe_pickle import load_data_pickle
from rq.pipeline.stages.audio import to_npy

# The SDK's file of each stream, and the modality rq names it by.
FILES = {"labels": "CMU_MOSEI_Labels.csd", "words": "CMU_MOSEI_TimestampedWordVectors.csd",
         "facet": "CMU_MOSEI_VisualFacet42.csd", "covarep": "CMU_MOSEI_COVAREP.csd"}
MODALITY_OF = {"words": "text", "facet": "visual", "covarep": "covarep"}
# MultiBench's pickle: its split names and array names, and rq's.
PICKLE_SPLITS = {"train": "train", "valid": "val", "test": "test"}
PICKLE_ARRAYS = {"vision": "visual", "text": "text", "audio": "covarep"}
# Split names a fold file may carry (the SDK's standard folds are train, valid and test).
FOLD_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
_INDEX_FORMAT = 1


@dataclass(frozen=True)
class Segment(Clip):
    """A labelled segment of a video. `files`: what each stage reads (a feature file, or the segment's
    copy of a pickle sample); `part` (on Clip) says which video and interval the stages read."""
    files: tuple[tuple[str, Path], ...] = ()
    video_id: str = ""
    start: float | None = None
    end: float | None = None
    score: float = 0.0                       # sentiment in [-3, 3], before binarisation
    emotions: tuple[float, ...] = ()         # the SDK's six emotion values
    sample_id: tuple[str, ...] = ()          # the pickle's `id` row

    def input_path(self, reads: str | None) -> Path | None:
        return dict(self.files).get(reads) if reads else None


@dataclass(frozen=True)
class Found:
    discovery: Discovery
    dims: dict[str, int]      # modality -> feature size (covarep only when its data is there)


def binarized(score: float, rule: str) -> int:
    """1 = positive: score >= 0 with "ge0" (BalanceBenchmark), score > 0 with "gt0" (MultiBench)."""
    return int(score >= 0) if rule == "ge0" else int(score > 0)


def discover_csd(raw: Path, classes: tuple[str, ...], rule: str, splits) -> Found:
    """The labelled segments of the SDK's files in `raw`; `splits(video id)` -> split or None (unlisted).
    A file that cannot be read is a CsdError."""
    files = {kind: raw / name for kind, name in FILES.items() if (raw / name).is_file()}
    missing = [name for kind, name in FILES.items() if kind != "covarep" and kind not in files]
    if missing:
        raise LayoutError(f"{raw}: no {', '.join(missing)} (the CMU-MultimodalSDK's CMU-MOSEI computational "
                          "sequences; CMU_MOSEI_COVAREP.csd is optional)")
    dims = {}
    for kind, path in files.items():   # every file opens (a truncated one is a CsdError now, not per segment)
        with open_csd(path) as seq:
            first = next(iter(seq.videos()), None)
            if kind != "labels" and first is not None:
                dims[MODALITY_OF[kind]] = int(seq.video(first).features.shape[1])
    with open_csd(files["labels"]) as labels:
        clips, rejected = _labelled(labels, files, classes, rule, splits)
    return Found(Discovery(tuple(clips), classes, tuple(rejected)), dims)


def _labelled(labels, files: dict[str, Path], classes, rule: str, splits) -> tuple[list[Segment], list[Rejected]]:
    clips, rejected = [], []
    inputs = tuple((kind, path.absolute()) for kind, path in files.items() if kind != "labels")
    for video_id in labels.videos():
        try:
            rows = labels.video(video_id)
        except CsdError as e:
            rejected.append(Rejected(f"{FILES['labels']}:{video_id}", str(e)))
            continue
        split = splits(video_id)
        for k, ((start, end), values) in enumerate(zip(rows.intervals, rows.features)):
            clip_id = f"{video_id}[{k}]"
            score = float(values[0]) if len(values) else math.nan
            if not (math.isfinite(score) and math.isfinite(start) and math.isfinite(end)):
                rejected.append(Rejected(clip_id, "its label row or interval is not finite"))
            elif end <= start:
                rejected.append(Rejected(clip_id, f"empty interval {start:g}-{end:g} s"))
            elif split is None:
                rejected.append(Rejected(clip_id, f"video {video_id} is in no --split-list"))
            else:
                label = binarized(score, rule)
                clips.append(Segment(clip_id, files["labels"].absolute(), clip_id, split, label, classes[label],
                                     part=json.dumps([video_id, float(start), float(end)]), files=inputs,
                                     video_id=video_id, start=float(start), end=float(end), score=score,
                                     emotions=tuple(float(v) for v in values[1:])))
    return clips, rejected


def seeded_video_split(seed: int, test_fraction: float, val_fraction: float):
    """Split by video id, so a video's segments never straddle splits: a seeded `test_fraction` of the
    videos is test, a seeded `val_fraction` of the rest val (carved out of train), the others train."""
    def split(video_id: str) -> str:
        if seeded_fraction(seed, video_id) < test_fraction:
            return "test"
        return "val" if seeded_fraction(seed, f"val:{video_id}") < val_fraction else "train"
    return split


def read_folds(specs: tuple[str, ...]):
    """Video id -> split from fold files `[SPLIT=]FILE` (one video id per line; SPLIT from the prefix
    or else the file name: train, valid/val/dev, test), as `splits(video id)` (None: in no file)."""
    folds: dict[str, str] = {}
    for spec in specs:
        head, sep, rest = spec.partition("=")
        named = FOLD_SPLITS.get(head) if sep else None
        path = Path(rest if named else spec)
        if named is None:
            found = {FOLD_SPLITS[w] for w in path.stem.lower().replace("-", "_").split("_") if w in FOLD_SPLITS}
            if len(found) != 1:
                raise LayoutError(f"--split-list {spec}: cannot tell its split from the name; write train={spec}, "
                                  f"val={spec} or test={spec}")
            named = found.pop()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise LayoutError(f"--split-list {path}: {e.strerror}") from None
        for line in lines:
            fields = line.replace(",", " ").split()
            if fields and not fields[0].startswith("#"):
                folds[fields[0]] = named
    return folds.get


def discover_pickle(pkl: Path, sources: Path, classes: tuple[str, ...], rule: str) -> Found:
    """The samples of MultiBench's pickle, in its own splits (train, valid -> val, test)."""
    folder = sources / "sources" / pkl.name
    index_path, stamp = folder / "index.json", fingerprint(pkl)
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        usable = index.get("format") == _INDEX_FORMAT and index.get("source") == stamp
    except (OSError, ValueError, AttributeError):
        usable = False
    if not usable:
        index = {"format": _INDEX_FORMAT, "source": stamp, **_unpack(pkl, folder)}
        write_atomic(index_path, (json.dumps(index, indent=0) + "\n").encode())
    clips = []
    for split, i, score, sample_id, rel in index["samples"]:
        label = binarized(score, rule)
        clip_id = f"{split}/{i:05d}"
        video_id = sample_id[0] if sample_id else clip_id
        clips.append(Segment(clip_id, (folder / rel).absolute(), f"{pkl.name}:{clip_id}", split, label,
                             classes[label], files=(("sample", (folder / rel).absolute()),), video_id=video_id,
                             score=score, sample_id=tuple(sample_id)))
    rejected = [Rejected(f"{pkl.name}:{source}", reason) for source, reason in index["rejected"]]
    return Found(Discovery(tuple(clips), classes, tuple(rejected)), index["dims"])


def _unpack(pkl: Path, folder: Path) -> dict:
    """Read the pickle (refusing any code: RefusedPickle) and copy each sample into `folder`; the index entries."""
    data = load_data_pickle(pkl)
    if not isinstance(data, dict) or not any(s in data for s in PICKLE_SPLITS):
        raise LayoutError(f"{pkl}: not MultiBench's MOSEI pickle (expected a dict with train, valid and test)")
    samples, rejected, dims = [], [], {}
    for name, split in PICKLE_SPLITS.items():
        if name not in data:
            continue
        arrays, labels, ids = _split_arrays(pkl, name, data[name])
        dims |= {m: int(a.shape[2]) for m, a in arrays.items()}
        for i in range(len(labels)):
            score = float(labels[i])
            if not math.isfinite(score):
                rejected.append([f"{split}/{i:05d}", "its label is not finite"])
                continue
            rel = f"{split}/{i:05d}.npz"
            write_atomic(folder / rel, _npz({m: a[i] for m, a in arrays.items()}))
            samples.append([split, i, score, ids[i] if ids else [], rel])
    return {"samples": samples, "rejected": rejected, "dims": dims}


def _split_arrays(pkl: Path, name: str, split: object) -> tuple[dict[str, np.ndarray], np.ndarray, list | None]:
    """One split's feature arrays (rq's modality names), labels [N] and id rows, checked."""
    if not isinstance(split, dict) or not {"vision", "text", "labels"} <= set(split):
        raise LayoutError(f"{pkl}: split {name!r} is not a dict with vision, text and labels arrays")
    arrays = {rq_name: split[key] for key, rq_name in PICKLE_ARRAYS.items() if key in split}
    labels = split["labels"]
    for key, a in [*arrays.items(), ("labels", labels)]:
        if not isinstance(a, np.ndarray) or not np.issubdtype(a.dtype, np.number):
            raise LayoutError(f"{pkl}: {name}/{key} is not a numeric array")
    n = len(labels)
    bad = [f"{m} {a.shape}" for m, a in arrays.items() if a.ndim != 3 or len(a) != n]
    if bad:
        raise LayoutError(f"{pkl}: {name}: arrays must be [N, steps, D] with N = {n} labels; got {', '.join(bad)}")
    ids = split.get("id")
    rows = None
    if isinstance(ids, (np.ndarray, list)) and len(ids) == n:
        rows = [[_text(v) for v in (np.atleast_1d(row).tolist())] for row in ids]
    return arrays, labels.reshape(n, -1)[:, 0].astype(np.float64), rows


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz with fixed member dates (np.savez stamps the current time), so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, array in sorted(arrays.items()):
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), to_npy(array))
    return buf.getvalue()
