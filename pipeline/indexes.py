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
    out = Path(out)
    sizes = {}
    for split, info in manifest["splits"].items():
        shards = info["shards"]
        sizes.update({s["name"]: s["samples"] for s in shards})
        if not shards:   # an empty split (e.g. no val): wids cannot open an index without shards
            (out / wids_index_name(split)).unlink(missing_ok=True)
            continue
        # urls relative to the index's own folder: wids resolves them from there, so the folder can move
        index = {"wids_version": 1, "name": f"{manifest.get('recipe', 'rq')}-{split}",
                 "shardlist": [{"url": s["name"], "nsamples": s["samples"]} for s in shards]}
        write_atomic(out / wids_index_name(split), (json.dumps(index, indent=1) + "\n").encode())
    write_atomic(out / SIZES, (json.dumps(sizes, indent=1, sort_keys=True) + "\n").encode())
