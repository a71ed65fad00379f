"""Where the shards are and what they hold: `open_source` turns a shards folder or a shard URL
pattern into a `ShardSource` (classes, splits with their URLs and sample counts, spectrogram shape).
Shards of other tools: their member names mapped by a `Members` (members.py), classes from a --classes
file, counts from a wids index or sizes.json beside them (shard_index.py), splits named on the command
line (`train=PATTERN::test=PATTERN`)."""
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from rq.pipeline.generations import ReaderHold
from rq.pipeline.manifest import MANIFEST, manifest_problem
from rq.train.data.errors import DataError, ManifestError
from rq.train.data.members import Members, read_classes
from rq.train.data.locations import is_plain_path, shard_name, split_urls
from rq.train.data.shard_index import counts_beside
from rq.train.data.tarstream import TarError, url_samples


@dataclass(frozen=True)
class ShardSource:
    classes: list[str]
    frames_per_clip: int
    spec_shape: tuple[int, int]                          # (F, T) of every spectrogram; (0, 0): sequence features
    splits: dict[str, tuple[list[str], int | None]]      # split -> (shard URLs, samples or None if unknown)
    manifest_sha256: str | None
    sizes: dict[str, list[int]] = field(default_factory=dict, repr=False)  # samples per shard, from the manifest
    preprocess: dict = field(default_factory=dict, repr=False)  # the manifest's config: how the shards were made
    # per split, per shard: the manifest's entry (samples, bytes, sha256) that the loader checks it against
    expected: dict[str, list[dict]] = field(default_factory=dict, repr=False)
    manifest_path: str | None = field(default=None, repr=False)
    hold: ReaderHold | None = field(default=None, repr=False, compare=False)  # the generations this reader uses
    _said: set = field(default_factory=set, repr=False, compare=False)
    # url -> file stamp of the shards whose sha256 this run has checked (integrity.checked_samples)
    verified: dict = field(default_factory=dict, repr=False, compare=False)
    # Sequence-feature shards (CMU-MOSEI): modality -> (steps, size) of each sample's `<modality>.npy`;
    # empty for audio-visual shards.
    features: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    members: Members = field(default_factory=Members, repr=False)   # which members hold frames, spec, label

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.features) or ("audio", "visual")

    def shard_sizes(self, split: str) -> list[int]:
        """Samples per shard of `split`: the manifest's counts, else the split's total spread evenly
        (a URL pattern without a manifest: exact coverage then depends on the shards being even)."""
        urls, total = self.split(split)
        if split in self.sizes:
            return self.sizes[split]
        if total is None:
            raise DataError(f"{urls[0]}: sample count of split '{split}' unknown (no manifest.json, wids index or "
                            "sizes.json beside the shards); `rq index` writes one")
        return [total // len(urls) + (i < total % len(urls)) for i in range(len(urls))]

    def shard_expected(self, split: str) -> list[dict | None]:
        """What the manifest says of each shard of `split` (None each when there is no manifest)."""
        return self.expected.get(split) or [None] * len(self.split(split)[0])

    def split(self, split: str) -> tuple[list[str], int | None]:
        if split not in self.splits:
            raise DataError(f"no '{split}' shards in this source (has: {', '.join(self.splits) or 'none'})")
        return self.splits[split]

    def rewritten(self) -> str | None:
        """One line, once per new version, when the manifest this source was opened from has been replaced
        since (rq preprocess rewrote the shards): this source goes on reading the set it opened, which
        its reader lock keeps on disk; a new run (or --resume) reads the new one."""
        if self.manifest_path is None:
            return None
        try:
            sha = hashlib.sha256(Path(self.manifest_path).read_bytes()).hexdigest()
        except OSError:
            sha = "gone"
        if sha == self.manifest_sha256 or sha in self._said:
            return None
        self._said.add(sha)
        return (f"note: {self.manifest_path} was replaced since this run opened it (rq preprocess rewrote the "
                f"shards); this run keeps reading the complete set it started with, a new run reads the new one")


def open_shards(shards: str, options) -> ShardSource:
    """`open_source` with the input options of rq train / rq eval (`options`: their config, or a dict of
    the options; "" or None = not given): frames_key, spec_key, label_key, classes (a file), manifest."""
    get = options.get if isinstance(options, dict) else lambda k: getattr(options, k, None)
    members = Members(frames=get("frames_key") or "", spec=get("spec_key") or "", label=get("label_key") or "")
    names = read_classes(get("classes")) if get("classes") else None
    src = open_source(shards, manifest=get("manifest") or None, members=members, classes=names)
    if names is not None and names != src.classes:   # a manifest's classes win: never silently
        raise DataError(f"--classes {get('classes')}: not the classes of the shards' manifest.json "
                        f"({len(src.classes)}: {', '.join(src.classes[:3])}...); leave --classes out")
    return src


def open_source(location: str, *, manifest: str | None = None, classes: Sequence[str] | None = None,
                frames_per_clip: int | None = None, samples: Mapping[str, int] | None = None,
                members: Members = Members()) -> ShardSource:
    """A shards folder (reads its manifest.json), or shard URLs: brace patterns joined by `::`, local
    paths or `pipe:` commands, e.g. `pipe:aws s3 cp s3://b/train-{000000..000009}.tar -`. A URL's split
    is the `train-`/`val-`/`test-` prefix of its shard name, or the one its pattern names (`test=PATTERN`).
    Counts and classes come from `manifest` (a local copy of the shards' manifest.json, e.g. for `pipe:`
    URLs), else from the manifest.json beside a local first URL (`classes`, `frames_per_clip` and
    `samples` are then unused). Otherwise `classes` is required; frames per clip are counted in the first
    sample unless given; sample counts come from a wids index or sizes.json beside local shards, else
    from `samples` (per split: shard sizes are then taken as even), else are unknown.

    URLs and commands come only from `location`, the caller's own command line: the shard names a
    manifest or index lists are plain file names in its folder (anything else: ManifestError)."""
    plain_path = is_plain_path(location)
    if plain_path and not Path(location).exists():
        raise DataError(f"{location}: no such folder")
    if plain_path and Path(location).is_dir():
        return _open_folder(Path(location).absolute(), members)
    splits = split_urls(location)
    urls = [url for us in splits.values() for url in us]
    names = {url: shard_name(url) for url in urls}   # url -> shard file name, the manifest's key
    remote = urls[0].startswith(("pipe:", "http:", "https:"))
    index = Path(manifest) if manifest else None if remote else Path(urls[0]).parent / MANIFEST
    if manifest and not index.is_file():
        raise DataError(f"--manifest {manifest}: no such file")
    if index is not None and index.is_file():
        content, sha = parse_manifest(index.read_bytes(), index)
        known = {s["name"]: s for info in content["splits"].values() for s in info["shards"]}
        missing = [u for u in urls if names[u] not in known]
        if missing:
            raise DataError(f"{missing[0]}: not listed in {index}")
        expected = {split: [known[names[u]] for u in us] for split, us in splits.items()}
        return _with_spec_shape(content["classes"], content["frames_per_clip"], splits, sha,
                                preprocess=content.get("config", {}), expected=expected,
                                features=_features(content, index), members=members)
    if classes is None:
        raise DataError(f"{urls[0]}: no manifest.json beside the shards; pass --classes FILE (one class name "
                        "per line, in label order)")
    expected = _indexed_counts(splits, names)
    samples = samples or {}
    return _with_spec_shape(list(classes), frames_per_clip, splits, None, expected=expected, members=members,
                            totals=None if expected else {split: samples.get(split) for split in splits})


def _indexed_counts(splits: dict[str, list[str]], names: dict[str, str]) -> dict[str, list[dict]]:
    """Per split, per shard, {"samples", "index"} from the wids index or sizes.json beside each local
    shard; {} when there is none. A shard the indexes there do not list is an error."""
    found: dict[Path, tuple[dict[str, int], str] | None] = {}
    expected = {}
    for split, urls in splits.items():
        entries = []
        for url in urls:
            if url.startswith(("pipe:", "http:", "https:")):
                return {}
            folder = Path(url).parent
            if folder not in found:
                found[folder] = counts_beside(folder)
            if found[folder] is None:
                return {}
            counts, where = found[folder]
            if names[url] not in counts:
                raise DataError(f"{url}: not listed in {folder / where}; `rq index` the shards again")
            entries.append({"samples": counts[names[url]], "index": where})
        expected[split] = entries
    return expected


def _open_folder(folder: Path, members: Members) -> ShardSource:
    """A folder of rq preprocess: its manifest, read together with a reader lock on the shard
    generations it lists (taken, then the manifest read again: a rewrite committed in between would
    otherwise leave this reader holding a set that is about to be deleted)."""
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder}: no manifest.json (not a folder written by rq preprocess)")
    for _ in range(5):
        raw = path.read_bytes()
        manifest, sha = parse_manifest(raw, path)
        hold = ReaderHold(folder, [s["name"] for info in manifest["splits"].values() for s in info["shards"]])
        if path.read_bytes() == raw:
            break
        hold.close()
    else:
        raise DataError(f"{path}: changed five times while being opened; is rq preprocess rewriting it in a loop?")
    splits = {name: [str(folder / s["name"]) for s in info["shards"]]
              for name, info in manifest["splits"].items() if info["shards"]}
    expected = {name: list(info["shards"]) for name, info in manifest["splits"].items() if info["shards"]}
    return _with_spec_shape(manifest["classes"], manifest["frames_per_clip"], splits, sha,
                            preprocess=manifest.get("config", {}), expected=expected, manifest_path=str(path),
                            hold=hold, features=_features(manifest, path), members=members)


def parse_manifest(raw: bytes, path: Path) -> tuple[dict, str]:
    """The manifest and the sha256 of its bytes; ManifestError (one line) when it is not a usable one."""
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    problem = manifest_problem(manifest)
    if problem:
        raise ManifestError(f"{path}: {problem}")
    return manifest, hashlib.sha256(raw).hexdigest()


def _with_spec_shape(classes: list[str], frames_per_clip: int | None, splits: dict[str, list[str]],
                     sha: str | None, *, totals: dict[str, int | None] | None = None, preprocess: dict | None = None,
                     expected: dict[str, list[dict]] | None = None, features: dict | None = None,
                     members: Members = Members(), **where) -> ShardSource:
    """The source, with the spectrogram shape (and, when not given, the frames per clip) of its first sample."""
    if not splits:
        raise DataError("no shards found")
    expected = expected or {}
    sizes = {split: [s["samples"] for s in expected[split]] for split in splits if split in expected}
    if totals is None:
        totals = {split: sum(sizes[split]) for split in splits}
    members = members.with_classes(classes)
    spec_shape, frames = ((0, 0), 0) if features else _peek(splits, members)
    return ShardSource(classes=list(classes), frames_per_clip=int(frames if frames_per_clip is None else frames_per_clip),
                       spec_shape=spec_shape, manifest_sha256=sha,
                       splits={split: (urls, totals[split]) for split, urls in splits.items()},
                       sizes=sizes, preprocess=preprocess or {}, expected=expected, features=features or {},
                       members=members, **where)


def _features(manifest: dict, path: Path) -> dict[str, tuple[int, int]]:
    """The sequence features a manifest lists ("modalities" and their "features" shapes), checked."""
    modalities, shapes = manifest.get("modalities"), manifest.get("features")
    if modalities is None:
        return {}
    problem = DataError(f"{path}: 'modalities' must list names whose 'features' entry is [steps, size], "
                        "the same steps for all")
    if not isinstance(modalities, list) or not modalities or not isinstance(shapes, dict):
        raise problem
    found = {}
    for m in modalities:
        shape = shapes.get(m) if isinstance(m, str) else None
        if not (isinstance(shape, list) and len(shape) == 2 and all(type(v) is int and v >= 1 for v in shape)):
            raise problem
        found[m] = (shape[0], shape[1])
    if len({steps for steps, _ in found.values()}) != 1:
        raise problem
    return found


def _peek(splits: dict[str, list[str]], members: Members) -> tuple[tuple[int, int], int]:
    """The spectrogram shape and frame count of the first readable sample, train shards first."""
    urls = splits.get("train", []) + [u for split, us in splits.items() if split != "train" for u in us]
    seen = None
    for url in urls:
        try:
            for sample in islice(url_samples(url), 8):
                seen = seen or sample
                spec = members.spec_bytes(sample)
                if spec is not None:
                    shape = np.load(io.BytesIO(spec), allow_pickle=False).shape
                    if len(shape) == 2:
                        return (int(shape[0]), int(shape[1])), len(members.frame_members(sample))
        except (TarError, OSError, ValueError):
            continue  # a damaged shard: the loader records it when it reads it; try the next
    listed = ", ".join(sorted(n for n in seen if not n.startswith("__"))) if seen else ""
    raise DataError(f"{urls[0]}: no readable 2-D spectrogram {members.describe('spec')} in the first samples of "
                    f"any shard" + (f" (their members: {listed}; --spec-key names the spectrogram's)" if seen else ""))
