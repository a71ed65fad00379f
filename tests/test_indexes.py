"""rq's shards open in the tools users already have: the real `wids` package reads the per-split index
rq preprocess writes, and open_clip's sizes.json lists every shard's sample count."""
import json

import pytest

from rq.pipeline.manifest import read_manifest

wids = pytest.importorskip("wids", reason="the wids package is not installed (pip install 'rq[test]')")


def test_wids_and_sizes_json_open_rq_shards(rq, folder_raw, tmp_path):
    out = tmp_path / "shards"
    result = rq("preprocess", "folder", "--raw", folder_raw, "--out", out, "--frame-size", 32, "--audio-seconds", 1,
                "--workers", 2, "-q")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    sizes = json.loads((out / "sizes.json").read_text())
    # an empty split (folder_raw's 3 train clips per class leave no val) gets no index
    assert not manifest["splits"]["val"]["shards"] and not (out / "val.wids.json").exists()
    for split, info in ((s, i) for s, i in manifest["splits"].items() if i["shards"]):
        assert {s["name"]: s["samples"] for s in info["shards"]}.items() <= sizes.items()
        dataset = wids.ShardListDataset(str(out / f"{split}.wids.json"), cache_dir=str(tmp_path / "wids-cache"))
        assert len(dataset) == info["samples"]
        keys = {dataset[i]["__key__"] for i in range(len(dataset))}
        sample = dataset[0]
        assert {".json", ".cls", ".spec.npy"} <= set(sample) and any(k.endswith(".jpg") for k in sample)
        listed = [json.loads(line) for line in (out / "clips.jsonl").read_text().splitlines()]
        assert len(keys) == sum(1 for c in listed if c["split"] == split and c["status"] == "ok")
