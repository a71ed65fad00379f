"""Shards checked against their manifest (size, sha256, sample count), three ways:
- as they are read: the loader reads a shard whole and checks it before using any of its samples
  (`checked_samples`); a shard that does not match is left out, counted and named in one line. The
  sha256 of a local shard is computed the first time a run reads it and again only when its size,
  mtime or inode changes (it costs about as much as decoding the shard's frames); its size and sample
  count are checked on every read;
- up front: `--verify` on rq train / rq eval checks every shard before the first step (`verify_source`);
- on demand: `rq verify DIR` reports missing, damaged, changed and extra shards in one table, e.g. for
  a copied or downloaded dataset (`cli_verify`), exit 1 when anything is wrong."""
import hashlib
import io
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from rq.pipeline.console import fail, out, progress, summary_table
from rq.pipeline.generations import generation_of
from rq.pipeline.manifest import MANIFEST
from rq.train.data.errors import DataError
from rq.train.data.source import ShardSource, parse_manifest
from rq.train.data.tarstream import TarError, count_samples, tar_samples, url_bytes, url_samples


class ShardMismatch(TarError):
    """A shard whose bytes or sample count are not what its manifest says."""


def shard_problem(expect: dict, data: bytes, hashed: bool = True) -> str | None:
    """Why `data` is not the shard `expect` (a manifest entry) describes, or None (`hashed` False: its
    sha256 is known to match already). TarError when the bytes are not a readable tar."""
    if "bytes" in expect and len(data) != expect["bytes"]:
        return f"is {len(data):,} bytes, the manifest says {expect['bytes']:,}"
    if hashed and "sha256" in expect and hashlib.sha256(data).hexdigest() != expect["sha256"]:
        return "its sha256 differs from the manifest's (the file was changed or damaged)"
    count = count_samples(io.BytesIO(data))
    if count != expect["samples"]:
        return f"holds {count} samples, {expect.get('index', 'the manifest')} says {expect['samples']}"
    return None


def checked_samples(url: str, expect: dict | None, verified: Mapping[str, tuple] | None = None,
                    record: Callable[[str, tuple], None] | None = None) -> Iterator[dict]:
    """The samples of one shard. With `expect` (its manifest entry) the shard is read whole and checked
    first, so a mismatch (ShardMismatch) is found before any of its samples is used; without, streamed.
    `verified`: url -> file stamp of the shards whose sha256 this run has checked (not hashed again
    while the stamp holds); `record(url, stamp)` is told of each newly checked one."""
    if expect is None:
        yield from url_samples(url)
        return
    stamp = file_stamp(url)
    known = stamp is not None and (verified or {}).get(url) == stamp
    data = url_bytes(url)
    problem = shard_problem(expect, data, hashed=not known)
    if problem:
        raise ShardMismatch(f"{problem}: shard left out")
    if stamp is not None and not known and record is not None:
        record(url, stamp)
    yield from tar_samples(io.BytesIO(data), url)


def file_stamp(url: str) -> tuple | None:
    """(size, mtime ns, inode, device) of a local shard; None for a pipe: or http(s) URL."""
    if url.startswith(("pipe:", "http:", "https:")):
        return None
    try:
        st = os.stat(url)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev


@dataclass(frozen=True)
class Check:
    shard: str
    split: str
    status: str          # ok | missing | damaged | changed | extra
    detail: str = ""


def check_shard(url: str, split: str, expect: dict) -> Check:
    """One shard against its manifest entry: damaged = not a readable tar, changed = a readable tar
    with other bytes or another sample count than the manifest's."""
    name = Path(url).name
    try:
        data = url_bytes(url)
    except FileNotFoundError:
        return Check(name, split, "missing", "no such file")
    except (OSError, ValueError) as e:   # ValueError: webdataset could not start a pipe:
        return Check(name, split, "missing", f"cannot be read: {getattr(e, 'strerror', None) or e}")
    try:
        count_samples(io.BytesIO(data))
        problem = shard_problem(expect, data)
    except TarError as e:
        return Check(name, split, "damaged", f"not a readable tar: {e}")
    return Check(name, split, "changed", problem) if problem else Check(name, split, "ok")


def verify_source(src: ShardSource, where: str) -> None:
    """`--verify`: every shard of `src` checked before training or evaluating; DataError naming the
    first that does not match (and how many do not)."""
    checks = _check_all([(url, split, expect) for split, (urls, _) in src.splits.items()
                         for url, expect in zip(urls, src.shard_expected(split)) if expect is not None])
    bad = [c for c in checks if c.status != "ok"]
    if bad:
        hint = f"; `rq verify {where}` lists them all" if src.manifest_path else ""
        raise DataError(f"{where}: {len(bad)} of {len(checks)} shards do not match their manifest "
                        f"({bad[0].shard}: {bad[0].status}, {bad[0].detail}){hint}")
    out.print(f"verified {len(checks)} shards of {where} against their manifest: all match")


def verify_folder(folder: Path) -> tuple[list[Check], int]:
    """Every shard the folder's manifest lists, checked; then every other .tar file in it (extra).
    Returns the checks and the number of samples the manifest lists."""
    folder = Path(folder).absolute()
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder}: no manifest.json (not a folder written by rq preprocess)")
    manifest, _ = parse_manifest(path.read_bytes(), path)
    listed = [(str(folder / s["name"]), split, s) for split, info in manifest["splits"].items() for s in info["shards"]]
    checks = _check_all(listed)
    names = {Path(url).name for url, _, _ in listed}
    for extra in sorted(p for p in folder.glob("*.tar") if p.name not in names):
        gen = generation_of(extra.name)
        checks.append(Check(extra.name, gen[0] if gen else "-", "extra", "not in manifest.json" + (
            " (an earlier generation: kept for a running reader, or left by a killed rq preprocess)" if gen else "")))
    return checks, sum(s["samples"] for _, _, s in listed)


def _check_all(shards: list[tuple[str, str, dict]]) -> list[Check]:
    with progress(total=len(shards), desc="verify", unit="shard") as bar:
        checks = []
        for url, split, expect in shards:
            checks.append(check_shard(url, split, expect))
            bar.update(1)
    return checks


def cli_verify(folder: Path) -> None:
    """`rq verify DIR`: one table; exit 1 when any shard is missing, damaged, changed or extra."""
    try:
        checks, samples = verify_folder(folder)
    except DataError as e:
        fail(str(e), e.exit_code)
    bad = [c for c in checks if c.status != "ok"]
    ok = len(checks) - len(bad)
    if not bad:
        summary_table(f"rq verify {folder}: every shard matches manifest.json", ["shards", "samples", "status"],
                      [[ok, samples, "ok"]])
        return
    summary_table(f"rq verify {folder}: {len(bad)} problems ({ok} shards ok)", ["shard", "split", "status", "detail"],
                  [[c.shard, c.split, c.status, c.detail] for c in bad])
    raise SystemExit(1)
