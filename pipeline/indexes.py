"""Standard shard indexes beside manifest.json, so tools that do not know rq open its shards with no
conversion: a `wids` index per split (`wids.ShardListDataset("OUT/train.wids.json")`) and open_clip's
`sizes.json` (shard file name -> samples). Both are derived from the manifest and written after it,
atomically and only when their bytes change."""
import json
from pathlib import Path

from rq.pipeline.atomic import write_atomic

SIZES = "sizes.json"


def wids_index_name(split: str) -> str:
    return f"{split}.wids.json"


def write_indexes(out: Path, manifest: dict) -> None:
    write_index_files(out, {split: [(s["name"], s["samples"]) for s in info["shards"]]
                            for split, info in manifest["splits"].items()}, f"{manifest.get('recipe', 'rq')}-")


def write_index_files(out: Path, shardlists: dict[str, list[tuple[str, int]]], prefix: str = "") -> None:
    """One wids index per split, named `prefix` + split, and sizes.json (shard file name -> samples).
    A shard's url is relative to `out`: wids resolves it from the index's folder, so the folder can move."""
    out = Path(out)
    sizes = {}
    for split, shards in shardlists.items():
        sizes.update({Path(url).name: samples for url, samples in shards})
        if not shards:   # an empty split (e.g. no val): wids cannot open an index without shards
            (out / wids_index_name(split)).unlink(missing_ok=True)
            continue
        index = {"wids_version": 1, "name": f"{prefix}{split}",
                 "shardlist": [{"url": url, "nsamples": samples} for url, samples in shards]}
        write_atomic(out / wids_index_name(split), (json.dumps(index, indent=1) + "\n").encode())
    write_atomic(out / SIZES, (json.dumps(sizes, indent=1, sort_keys=True) + "\n").encode())
