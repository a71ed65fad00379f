"""Where `--shards` points: one folder, or URL patterns joined by `::`, each pattern's split the one it
names (`test=PATTERN`) or its shard names' train-/val-/test- prefix."""
import re
from pathlib import Path

import braceexpand

from rq.train.data.errors import DataError

NAMED_SPLIT = re.compile(r"(train|val|test)=(.+)", re.S)    # --shards 'train=DIR/{0..9}.tar::test=...'
PREFIX_SPLIT = re.compile(r"(train|val|test)-[^/\s]*\.tar")  # rq's shard names: train-000000.tar, ...


def is_plain_path(location: str) -> bool:
    """Whether --shards names one file or folder (not patterns, a URL, a command or a named split)."""
    return not ("::" in location or "{" in location or "://" in location or location.startswith("pipe:")
                or NAMED_SPLIT.fullmatch(location))


def split_urls(location: str, unnamed: str | None = None) -> dict[str, list[str]]:
    """split -> URLs of `PATTERN::PATTERN...`: a pattern's split is the one it names (`test=PATTERN`),
    else its shard names' train-/val-/test- prefix, else `unnamed` (None: DataError, one line)."""
    splits: dict[str, list[str]] = {}
    for part in location.split("::"):
        part = part.strip()
        named = NAMED_SPLIT.fullmatch(part)
        for url in braceexpand.braceexpand(named.group(2) if named else part):
            prefix = PREFIX_SPLIT.search(url)
            split = named.group(1) if named else prefix.group(1) if prefix else unnamed
            if split is None:
                raise DataError(f"{url}: cannot tell the split; name it, e.g. --shards 'train=DIR/{{000000..000009}}"
                                ".tar::test=DIR/eval-{0..1}.tar', or name the shards train-*.tar, val-*.tar, test-*.tar")
            splits.setdefault(split, []).append(url)
    if not splits:
        raise DataError(f"{location}: no shards named")
    return splits


def shard_name(url: str) -> str:
    """The shard file name of a path, or in a `pipe:` command (`pipe:aws s3 cp s3://b/x-000.tar -` -> x-000.tar)."""
    if not url.startswith(("pipe:", "http:", "https:")):
        return Path(url).name
    tars = re.findall(r"[^/\s:]+\.tar\b", url)
    return tars[-1] if tars else url
