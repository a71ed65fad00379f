"""`rq preprocess` output against docs/shards.md: manifest, tar layout and metadata, WebDataset
reading, determinism, shard size bound, dry run, --force, usage errors."""
import hashlib
import io
import json
import re
import tarfile

import cv2
import numpy as np
import webdataset as wds

from conftest import contents, snapshot
from rq.pipeline.manifest import read_jsonl, read_manifest

SMALL = ("--audio-seconds", "1", "--frame-size", "32")


def run(rq, raw, out, *extra):
    result = rq("preprocess", "folder", "--raw", raw, "--out", out, "--workers", "2", *SMALL, *extra)
    assert result.exit_code == 0, result.stderr
    return result


def doc_key(clip_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", clip_id)[:80] + "_" + hashlib.sha1(clip_id.encode()).hexdigest()[:10]


def test_shards_follow_the_documented_format(rq, folder_raw, tmp_path):
    out = tmp_path / "out"
    run(rq, folder_raw, out)
    manifest = read_manifest(out)
    assert manifest["format"] == "rq-shards/1" and manifest["recipe"] == "folder"
    assert manifest["classes"] == ["a", "b"] and manifest["frames_per_clip"] == 3
    assert manifest["config"]["spectrogram"]["hop_length"] == 159 and manifest["config"]["seed"] == 0
    assert {k: v["samples"] for k, v in manifest["splits"].items()} == {"train": 6, "val": 0, "test": 2}
    assert manifest["totals"] == {"clips": 8, "samples": 8, "skipped": 0, "unmatched": 0,
                                  "bytes": sum(s["bytes"] for s in manifest["splits"].values())}
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            data = (out / shard["name"]).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (shard["bytes"], shard["sha256"])

    clips = {row["clip_id"]: row for row in read_jsonl(out / "clips.jsonl")}
    assert len(clips) == 8 and {r["status"] for r in clips.values()} == {"ok"}
    assert clips["test/b/b9.mp4"] == {"clip_id": "test/b/b9.mp4", "split": "test", "label": 1,
                                           "label_name": "b", "source": "test/b/b9.mp4", "status": "ok"}

    with tarfile.open(out / "train-000000.tar") as tar:
        members = tar.getmembers()
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644) for m in members)
    names = [m.name for m in members]
    keys = list(dict.fromkeys(n.split(".", 1)[0] for n in names))
    # members of a sample adjacent, in the documented order
    assert names == [f"{k}.{s}" for k in keys for s in ("json", "cls", "f0000.jpg", "f0001.jpg", "spec.npy")]

    urls = [str(out / s["name"]) for s in manifest["splits"]["train"]["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert len(samples) == 6
    for sample in samples:
        meta = json.loads(sample["json"])
        assert sample["__key__"] == doc_key(meta["clip_id"]) and "." not in sample["__key__"]
        assert meta["source"] == meta["clip_id"] and meta["split"] == "train"
        assert int(sample["cls"]) == meta["label"] == manifest["classes"].index(meta["label_name"])
        assert meta["n_frames"] == 2 and meta["fps"] == 1.0 and meta["sample_rate"] == 16000
        assert meta["stft"] == {"n_fft": 512, "win_length": 512, "hop_length": 159}
        assert abs(meta["duration"] - 1.2) < 0.1
        spec = np.load(io.BytesIO(sample["spec.npy"]))
        assert spec.dtype == np.float16 and spec.shape == (257, 1 + (16000 - 512) // 159)
        frame = np.frombuffer(sample["f0001.jpg"], np.uint8)
        assert cv2.imdecode(frame, cv2.IMREAD_COLOR).shape == (32, 43, 3)
    labels = [json.loads(s["json"])["label"] for s in samples]
    assert labels != sorted(labels) and labels != sorted(labels, reverse=True)  # classes mixed


def test_two_fresh_runs_are_byte_identical_and_seed_orders(rq, folder_raw, tmp_path):
    run(rq, folder_raw, tmp_path / "one")
    run(rq, folder_raw, tmp_path / "two")
    assert contents(tmp_path / "one") == contents(tmp_path / "two")
    run(rq, folder_raw, tmp_path / "three", "--seed", "1", "--cache", tmp_path / "one" / ".cache")

    def order(out):
        with tarfile.open(out / "train-000000.tar") as tar:
            return [m.name for m in tar.getmembers()]
    assert order(tmp_path / "three") != order(tmp_path / "one")
    assert sorted(order(tmp_path / "three")) == sorted(order(tmp_path / "one"))


def test_shards_are_size_bounded(rq, folder_raw, tmp_path):
    out = tmp_path / "out"
    run(rq, folder_raw, out, "--shard-size", "0.13")
    shards = read_manifest(out)["splits"]["train"]["shards"]
    assert len(shards) == 3 and sum(s["samples"] for s in shards) == 6
    assert all((out / s["name"]).stat().st_size <= 130_000 for s in shards)


def test_dry_run_plans_without_decoding_or_writing(rq, folder_raw, tmp_path, ffmpeg_log):
    out = tmp_path / "out"
    result = rq("preprocess", "folder", "--raw", folder_raw, "--out", out, "--dry-run", *SMALL)
    assert result.exit_code == 0 and not out.exists() and ffmpeg_log.calls() == []
    assert re.search(r"probe\s+│\s+8 │\s+0 │", result.stdout)
    run(rq, folder_raw, out)
    before = snapshot(out)
    ffmpeg_log.clear()
    result = rq("preprocess", "folder", "--raw", folder_raw, "--out", out, "--dry-run", *SMALL, "--hop-length", "160")
    assert result.exit_code == 0 and ffmpeg_log.calls() == [] and snapshot(out) == before
    assert re.search(r"audio\s+│\s+0 │\s+8 │", result.stdout)
    assert re.search(r"spectrogram\s+│\s+8 │\s+0 │", result.stdout)


def test_force_recomputes_one_stage(rq, folder_raw, tmp_path, ffmpeg_log):
    out = tmp_path / "out"
    run(rq, folder_raw, out)
    before = contents(out)
    ffmpeg_log.clear()
    result = run(rq, folder_raw, out, "--force", "frames")
    assert len(ffmpeg_log.calls()) == 8 and all("fps=" in call for call in ffmpeg_log.calls())
    assert re.search(r"frames\s+│\s+8 │\s+0 │", result.stdout)
    assert contents(out) == before  # same bytes again: deterministic frames, shards left as they were


def test_usage_errors_are_one_line_exit_2(rq, folder_raw, tmp_path):
    cases = [(("folder", "--out", tmp_path / "o"), "--raw"),
             (("folder", "--raw", tmp_path / "nope", "--out", tmp_path / "o"), "no such folder"),
             (("kinetics", "--raw", folder_raw, "--out", tmp_path / "o"), "no annotations/train.csv"),
             (("cremad", "--raw", folder_raw, "--out", tmp_path / "o"), "not a CREMA-D download"),
             (("folder", "--raw", folder_raw, "--out", tmp_path / "o", "--force", "video"), "--force"),
             (("folder", "--raw", folder_raw, "--out", tmp_path / "o", "--audio-pad", "edge"), "--audio-pad")]
    (tmp_path / "empty").mkdir()
    cases.append((("folder", "--raw", tmp_path / "empty", "--out", tmp_path / "o"), "no class folders"))
    for args, text in cases:
        result = rq("preprocess", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and text in result.stderr, result.stderr
