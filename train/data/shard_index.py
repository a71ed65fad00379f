"""Sample counts of shards that have no rq manifest: read from the indexes other tools keep beside their
shards — a `wids` index (`*.wids.json`: {"wids_version": 1, "shardlist": [{"url", "nsamples"}]}) or
open_clip's `sizes.json` (shard file name -> samples) — or made by `rq index SHARDS...`, which counts
each tar's samples and writes both.

An index comes from outside like a manifest: it is parsed and bounded, and gives only counts, looked up
by shard file name. Its names must be plain file names in its own folder (pipeline/manifest.py
`name_problem`); the shards read are always those of the command line, never a URL or `pipe:` command
an index names. Each shard is still checked against its count as the loader reads it (integrity.py)."""
import json
import os
from collections.abc import Sequence
from pathlib import Path

from rq.pipeline.console import fail, out, progress, summary_table
from rq.pipeline.indexes import SIZES, wids_index_name, write_index_files
from rq.pipeline.atomic import WriteError
from rq.pipeline.manifest import name_problem
from rq.train.data.errors import DataError, ManifestError
from rq.train.data.locations import split_urls
from rq.train.data.tarstream import TarError, count_samples

MAX_INDEX_BYTES = 64 << 20      # an index of a million shards is ~60 MB; anything larger is not one
MAX_SAMPLES = 1 << 31           # samples one shard may claim


def counts_beside(folder: Path) -> tuple[dict[str, int], str] | None:
    """Shard file name -> samples from the indexes in `folder` (sizes.json and every *.wids.json), and
    the index files' names (for messages); None when there is none. ManifestError (one line) for an
    index that is not well-formed, names a path, URL or command, or disagrees with another."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.wids.json")) + ([folder / SIZES] if (folder / SIZES).is_file() else [])
    if not paths:
        return None
    counts: dict[str, int] = {}
    where: dict[str, str] = {}
    for path in paths:
        for name, n in _index_counts(path).items():
            if counts.get(name, n) != n:
                raise ManifestError(f"{path}: {name} holds {n} samples, {where[name]} says {counts[name]}")
            counts[name], where[name] = n, path.name
    return counts, " and ".join(p.name for p in paths)


def _index_counts(path: Path) -> dict[str, int]:
    try:
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise ManifestError(f"{path}: larger than {MAX_INDEX_BYTES >> 20} MB, not a shard index")
        content = json.loads(path.read_bytes())
    except OSError as e:
        raise ManifestError(f"{path}: cannot be read ({e.strerror or e})") from None
    except ValueError as e:
        raise ManifestError(f"{path}: not valid JSON ({e})") from None
    if path.name == SIZES:
        if not isinstance(content, dict):
            raise ManifestError(f"{path}: must be a JSON object of shard name -> samples")
        pairs = list(content.items())
    else:
        if not isinstance(content, dict) or content.get("wids_version") != 1 or not isinstance(
                content.get("shardlist"), list):
            raise ManifestError(f"{path}: not a wids index (needs wids_version 1 and a shardlist)")
        if not all(isinstance(s, dict) for s in content["shardlist"]):
            raise ManifestError(f"{path}: each shardlist entry must be an object with url and nsamples")
        pairs = [(s.get("url"), s.get("nsamples")) for s in content["shardlist"]]
    counts = {}
    for name, n in pairs:
        problem = name_problem(name)
        if problem:
            raise ManifestError(f"{path}: {problem}")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SAMPLES:
            raise ManifestError(f"{path}: {name}: the sample count must be a whole number 0..{MAX_SAMPLES}, "
                                f"got {n!r}")
        counts[name] = n
    return counts


def index_shards(splits: dict[str, list[str]], folder: Path) -> dict[str, int]:
    """Count each shard's samples and write sizes.json and one wids index per split into `folder`
    (urls relative to it, as wids resolves them). Returns shard name -> samples."""
    folder = Path(folder).absolute()
    listed = [(split, Path(url).absolute()) for split, urls in splits.items() for url in urls]
    names = [p.name for _, p in listed]
    if len(set(names)) < len(names):
        raise DataError(f"{folder}: two shards have the same file name; sizes.json names shards by file name")
    counts, shardlists = {}, {}
    with progress(total=len(listed), desc="index", unit="shard") as bar:
        for split, path in listed:
            try:
                with open(path, "rb") as f:
                    counts[path.name] = count_samples(f)
            except FileNotFoundError:
                raise DataError(f"{path}: no such file") from None
            except (OSError, TarError) as e:
                raise DataError(f"{path}: not a readable tar ({getattr(e, 'strerror', None) or e})") from None
            shardlists.setdefault(split, []).append((os.path.relpath(path, folder), counts[path.name]))
            bar.update(1)
    folder.mkdir(parents=True, exist_ok=True)
    write_index_files(folder, shardlists)
    return counts


def cli_index(patterns: Sequence[str], out_dir: Path | None) -> None:
    """`rq index SHARDS... [--out DIR]`: local tars only (a pipe: or URL would be read whole to be counted)."""
    try:
        location = "::".join(patterns)
        splits = split_urls(location, unnamed="shards")
        urls = [u for us in splits.values() for u in us]
        remote = next((u for u in urls if u.startswith(("pipe:", "http:", "https:"))), None)
        if remote:
            raise ManifestError(f"{remote}: rq index counts local tar files only")
        folder = out_dir or Path(urls[0]).parent
        counts = index_shards(splits, folder)
    except DataError as e:
        fail(str(e), e.exit_code)
    except WriteError as e:
        fail(str(e), 1)
    written = [wids_index_name(s) for s in splits] + [SIZES]
    summary_table(f"rq index: {len(counts)} shards, {sum(counts.values())} samples",
                  ["split", "shards", "samples"],
                  [[s, len(us), sum(counts[Path(u).name] for u in us)] for s, us in splits.items()])
    out.print(f"wrote {', '.join(written)} in {folder}", markup=False)
