"""The streaming shard loader on real tiny tars (tests/helpers.py writes them in the docs/shards.md layout)."""
import io
import json
import math
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds
from typer.testing import CliRunner

from rq.cli import app
from helpers import GREEN_BASE, GREEN_STEP, frame_index, frame_jpeg, write_shards
from rq.train.data.augment import MEAN, STD, decode_frame, pick_frames, random_crop_box
from rq.train.data import (DataConfig, DataError, eval_batches, open_source, shard_order, to_device,
                        train_batches)
from rq.train.data.tarstream import url_samples

SIZES = [5, 7, 11]  # uneven on purpose: 23 samples, fewer shards than 2 ranks x 2 workers


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("shards")
    return out, write_shards(out, {"train": SIZES, "test": SIZES})


def cfg(**kw) -> DataConfig:
    return DataConfig(**{"batch_size": 4, "frames": 3, "image_size": 32, "workers": 0, "shuffle_buffer": 8,
                         "pin_memory": False, **kw})


def frame_indices(batch: dict) -> list[list[int]]:
    """Which source frame each output frame came from, read from its green level."""
    return [[frame_index(f.permute(1, 2, 0).numpy()) for f in clip] for clip in batch["frames"]]


def test_source_from_folder(shards):
    out, manifest = shards
    src = open_source(str(out))
    assert src.classes == manifest["classes"] and src.frames_per_clip == 3 and src.spec_shape == (257, 12)
    assert src.splits["train"] == ([str(out / f"train-{i:06d}.tar") for i in range(3)], 23)
    assert src.shard_sizes("train") == SIZES and len(src.manifest_sha256) == 64


def test_batch_shapes_and_dtypes(shards):
    src = open_source(str(shards[0]))
    batch = next(iter(train_batches(src, cfg(), epoch=0, rank=0, world=1, steps=1)))
    assert batch["frames"].shape == (4, 3, 3, 32, 32) and batch["frames"].dtype == torch.uint8
    assert batch["spec"].shape == (4, 1, 257, 12) and batch["spec"].dtype == torch.float16
    assert batch["label"].dtype == torch.int64 and len(batch["key"]) == 4
    # Each spectrogram is filled with its sample's ordinal, and the label is ordinal % 3: they travel together.
    ordinals = batch["spec"][:, 0, 0, 0].long()
    assert torch.equal(batch["label"], ordinals % 3)
    rgb = batch["frames"][0, 0].permute(1, 2, 0).float()
    assert abs(rgb[..., 2].mean().item() - 128) < 4  # blue is 128: the BGR->RGB swap happened


def test_pick_frames_segments():
    assert pick_frames(10, 3, None) == [1, 4, 7]
    assert pick_frames(1, 3, None) == [0, 0, 0] and pick_frames(2, 3, None) == [0, 0, 1]
    rng = np.random.default_rng(0)
    draws = np.array([pick_frames(10, 3, rng) for _ in range(300)])
    for s, (lo, hi) in enumerate([(0, 3), (3, 6), (6, 10)]):
        assert set(draws[:, s]) == set(range(lo, hi))  # every frame of the segment, nothing outside


def test_loader_picks_centres_for_eval_and_segment_frames_for_training(shards):
    src = open_source(str(shards[0]))
    for batch in eval_batches(src, cfg(), split="test"):
        assert all(clip == [1, 4, 7] for clip in frame_indices(batch))
    seen = [clip for batch in train_batches(src, cfg(), epoch=0, rank=0, world=1, steps=6)
            for clip in frame_indices(batch)]
    assert all(0 <= a < 3 <= b < 6 <= c < 10 for a, b, c in seen)
    assert len({tuple(clip) for clip in seen}) > 5  # random, not a fixed pick


def test_pick_frames_released_rules():
    # Kinetics-Sounds (files numbered from 1, our index = file - 1): 10 frames, seg 3.
    assert pick_frames(10, 3, None, "released-ks") == [0, 3, 6]
    rng = np.random.default_rng(0)
    draws = np.array([pick_frames(10, 3, rng, "released-ks") for _ in range(300)])
    for s, allowed in enumerate(({0, 1, 2}, {3, 4, 5}, {6, 7, 8})):   # the 10th frame is never used
        assert set(draws[:, s]) == allowed
    assert {tuple(pick_frames(20, 3, rng, "released-ks")) for _ in range(50)} <= {
        (a, b, c) for a in range(6) for b in range(6, 12) for c in range(8, 9)}   # file numbers stop at 9
    assert pick_frames(6, 3, rng, "released-ks") == [0, 0, 0] == pick_frames(6, 3, None, "released-ks")
    # CREMA-D: uniform with replacement over the whole clip, in time order; eval the segment centres.
    draws = [pick_frames(5, 2, rng, "random") for _ in range(300)]
    assert all(a <= b for a, b in draws) and {a for a, _ in draws} | {b for _, b in draws} == set(range(5))
    assert any(a == b for a, b in draws) and pick_frames(5, 2, None, "random") == pick_frames(5, 2, None)


def test_per_frame_crops_and_random_test_frames(shards):
    src = open_source(str(shards[0]))

    def reds(clip):            # the red ramp of each frame: where and how it was cropped (and flipped)
        return [f[0].float().mean(0) for f in clip]

    def same_crop(clip):
        r = reds(clip)
        return all(torch.allclose(r[0], x, atol=4) for x in r[1:])

    for crop, shared in (("clip", True), ("frame", False)):
        clips = [c for b in train_batches(src, cfg(frame_crop=crop), epoch=0, rank=0, world=1, steps=4)
                 for c in b["frames"]]
        assert all(map(same_crop, clips)) if shared else not all(map(same_crop, clips))
    fixed = [frame_indices(b) for b in eval_batches(src, cfg(frame_pick="random"), split="test")]
    drawn = [frame_indices(b) for b in eval_batches(src, cfg(frame_pick="random", random_eval_frames=True), split="test")]
    assert all(clip == [1, 4, 7] for batch in fixed for clip in batch)
    assert any(clip != [1, 4, 7] for batch in drawn for clip in batch)
    assert drawn == [frame_indices(b) for b in eval_batches(src, cfg(frame_pick="random", random_eval_frames=True),
                                                             split="test")]     # seeded: the same draw again
    # and evaluation frames are still resized whole, never cropped
    assert all(same_crop(c) for b in eval_batches(src, cfg(random_eval_frames=True), split="test") for c in b["frames"])


def test_crop_and_flip_on_uint8():
    jpeg = frame_jpeg(2, 48, 64)
    out = np.empty((16, 16, 3), np.uint8)
    decode_frame(jpeg, (0.0, 0.0, 1.0, 1.0), 16, False, out)
    red = out[..., 0].astype(int).mean(axis=0)
    assert red[-1] - red[0] > 150 and abs(out[..., 1].mean() - (GREEN_BASE + 2 * GREEN_STEP)) < 3
    decode_frame(jpeg, (0.0, 0.0, 1.0, 1.0), 16, True, out)
    assert np.allclose(out[..., 0].astype(int).mean(axis=0), red[::-1], atol=3)  # mirrored
    decode_frame(jpeg, (0.25, 0.5, 0.75, 1.0), 16, False, out)  # right half: only the bright reds
    assert out[..., 0].min() > 110
    rng = np.random.default_rng(1)
    for _ in range(200):
        top, left, bottom, right = random_crop_box(48, 64, rng)
        area, aspect = (bottom - top) * (right - left), (right - left) * 64 / ((bottom - top) * 48)
        assert 0 <= top < bottom <= 1 and 0 <= left < right <= 1
        assert 0.06 < area <= 1 and 0.7 < aspect < 1.4


def test_reduced_decode_matches_full_decode():
    """A 256x320 frame resized to 32 is decoded at 1/8 scale by libjpeg: same picture, far less work."""
    jpeg = frame_jpeg(3, 256, 320, texture=True)
    out = np.empty((32, 32, 3), np.uint8)
    decode_frame(jpeg, (0.0, 0.0, 1.0, 1.0), 32, False, out)
    full = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    want = cv2.cvtColor(cv2.resize(full, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    assert np.abs(out.astype(int) - want).mean() < 4


def test_decode_frame_rejects_garbage():
    with pytest.raises(ValueError, match="does not decode"):
        decode_frame(b"\xff\xd8 not a jpeg", (0.0, 0.0, 1.0, 1.0), 8, False, np.empty((8, 8, 3), np.uint8))


def test_to_device_normalises():
    frames = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 1, 3, 1, 1).expand(2, 3, 3, 4, 4)
    batch = {"frames": frames, "spec": torch.ones(2, 1, 5, 6, dtype=torch.float16),
             "label": torch.tensor([0, 1]), "key": ["a", "b"]}
    out = to_device(batch, "cpu")
    want = (torch.tensor([0, 128, 255]) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert out["frames"].dtype == torch.float32 and out["frames"].is_contiguous()
    assert torch.allclose(out["frames"][1, 2, :, 3, 3], want, atol=1e-5)
    assert out["spec"].dtype == torch.float32 and out["key"] == ["a", "b"]


def test_shard_order_changes_per_epoch_and_is_reproducible(shards):
    orders = [shard_order(20, 0, epoch) for epoch in range(3)]
    assert orders[0] == shard_order(20, 0, 0) and len({tuple(o) for o in orders}) == 3
    assert shard_order(20, 1, 0) != orders[0] and sorted(orders[0]) == list(range(20))
    src = open_source(str(shards[0]))

    def keys(epoch: int, seed: int = 0) -> list[str]:
        return [k for b in train_batches(src, cfg(seed=seed), epoch=epoch, rank=0, world=1, steps=5) for k in b["key"]]

    assert keys(0) == keys(0) and keys(0) != keys(1) and keys(0) != keys(0, seed=1)


@pytest.mark.parametrize("workers", [0, 2])
def test_equal_steps_per_rank_and_whole_epoch_coverage(shards, workers):
    src = open_source(str(shards[0]))
    config = cfg(workers=workers)
    steps = math.ceil(23 / (config.batch_size * 2))  # steps * batch * world >= n: nothing may be missed
    seen = Counter()
    for rank in range(2):
        batches = train_batches(src, config, epoch=3, rank=rank, world=2, steps=steps)
        got = list(batches)
        assert len(got) == len(batches) == steps and batches.stats.batches == steps
        assert all(len(b["key"]) == 4 for b in got)
        seen.update(k for b in got for k in b["key"])
    assert set(seen) == set(shards[1]["keys"]["train"]) and max(seen.values()) <= 2
    # Far more steps than data on one rank still yields exactly `steps`, repeating the data evenly.
    many = Counter(k for b in train_batches(src, config, epoch=0, rank=1, world=2, steps=23) for k in b["key"])
    assert sum(many.values()) == 92 and min(many.values()) >= 3 and max(many.values()) <= 5


@pytest.mark.timeout(60)
def test_workers_start_after_cv2_used_its_threads(shards):
    """cv2's thread pool running in the trainer's process must not hang the forked workers."""
    cv2.setNumThreads(2)
    big = np.zeros((1500, 1500, 3), np.uint8)
    for _ in range(3):
        cv2.resize(big, (700, 700), interpolation=cv2.INTER_AREA)
    src = open_source(str(shards[0]))
    assert len(list(train_batches(src, cfg(workers=2), epoch=0, rank=0, world=1, steps=2))) == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_eval_sees_every_sample_exactly_once(shards, workers):
    src = open_source(str(shards[0]))
    keys = []
    for rank in range(2):
        keys += [k for b in eval_batches(src, cfg(workers=workers), rank=rank, world=2) for k in b["key"]]
    assert sorted(keys) == sorted(shards[1]["keys"]["test"])


def test_truncated_tar_and_corrupt_jpeg_are_skipped_and_counted(tmp_path):
    manifest = write_shards(tmp_path, {"train": SIZES}, bad_jpeg=["placeholder"])  # learn the keys first
    bad_key = manifest["keys"]["train"][2]  # in train-000000.tar
    write_shards(tmp_path, {"train": SIZES}, bad_jpeg=[bad_key])
    truncated = tmp_path / "train-000002.tar"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    src = open_source(str(tmp_path))
    for workers in (0, 2):
        # 11 of 23 samples are good (the truncated shard is refused whole): the top-up pass fills the batches
        batches = train_batches(src, cfg(workers=workers), epoch=0, rank=0, world=1, steps=2)
        assert len(list(batches)) == 2  # the run goes on, with exactly the asked steps
        skipped = batches.stats.skipped
        assert any(s.shard == str(tmp_path / "train-000000.tar") and s.key == bad_key and "JPEG" in s.reason
                   and not s.tar for s in skipped)
        # The manifest's size and sha256 show the damage before any of the shard's samples is used.
        assert [s.reason for s in skipped if s.tar] == [f"ShardMismatch: is {truncated.stat().st_size:,} bytes, "
                                                        f"the manifest says {2 * truncated.stat().st_size:,}: "
                                                        "shard left out"]
        assert batches.stats.skipped_samples == 1 and batches.stats.bad_tars == 1
    # Without a manifest (a pipe: source) the tar is streamed: it is named with the sample it broke in.
    piped = open_source(f"pipe:cat {tmp_path}/train-{{000000..000002}}.tar", classes=manifest["classes"],
                        frames_per_clip=3, samples={"train": 23})
    streamed = eval_batches(piped, cfg(), split="train")
    assert len([k for b in streamed for k in b["key"]]) > 12   # the samples before the break are used
    assert any(s.shard.endswith("train-000002.tar") and s.tar and s.key in manifest["keys"]["train"]
               for s in streamed.stats.skipped)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_reader_agrees_with_webdataset(tmp_path, fmt):
    path = tmp_path / "train-000000.tar"
    # Names past ustar's 100 chars: keys take up to 80 + 11 chars (docs/shards.md); ustar needs a folder.
    keys = ["plain", "dir/" + "d" * 60 + "/" + "e" * 60] + (["k" * 91] if fmt != tarfile.USTAR_FORMAT else [])
    with tarfile.open(path, "w", format=fmt) as tar:
        for key in keys:
            for suffix, data in [("json", b"{}"), ("f0000.jpg", b"x" * 700), ("spec.npy", b"")]:
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    ours = list(url_samples(str(path)))
    theirs = [{k: v for k, v in s.items() if k != "__local_path__"}
              for s in wds.tarfile_to_samples()([{"url": str(path)}])]
    assert ours == theirs and [s["__key__"] for s in ours] == keys


def test_url_patterns_with_brace_expansion(shards, tmp_path):
    out, manifest = shards
    src = open_source(f"{out}/train-{{000000..000002}}.tar::{out}/test-{{000000..000001}}.tar")
    assert src.shard_sizes("train") == SIZES and src.splits["test"][1] == 12  # counts from the manifest beside
    for name in ("train-000000.tar", "train-000001.tar", "train-000002.tar"):
        shutil.copy(out / name, tmp_path / name)  # no manifest here
    with pytest.raises(DataError, match="no manifest.json"):
        open_source(f"{tmp_path}/train-{{000000..000002}}.tar")
    piped = open_source(f"pipe:cat {tmp_path}/train-{{000000..000002}}.tar", classes=manifest["classes"],
                        frames_per_clip=3, samples={"train": 23})
    assert piped.spec_shape == (257, 12) and piped.manifest_sha256 is None
    keys = [k for b in eval_batches(piped, cfg(workers=2), split="train") for k in b["key"]]
    assert sorted(keys) == sorted(manifest["keys"]["train"])
    assert len(list(train_batches(piped, cfg(), epoch=0, rank=0, world=1, steps=3))) == 3


def test_unusable_sources_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        open_source(str(tmp_path))
    with pytest.raises(DataError, match="cannot tell the split"):
        open_source(f"{tmp_path}/shard-{{0..1}}.tar", classes=["a"], frames_per_clip=1)
    result = CliRunner().invoke(app, ["bench", "loader", "--shards", str(tmp_path)])
    assert result.exit_code == 2 and "manifest.json" in result.output


def test_bench_loader_end_to_end(shards, tmp_path):
    result = CliRunner().invoke(app, ["bench", "loader", "--shards", str(shards[0]), "--workers", "2",
                                      "--batches", "2", "--batch-size", "4", "--image-size", "32",
                                      "--json", str(tmp_path / "bench.json")])
    assert result.exit_code == 0, result.output
    assert "speed-up" in result.output
    assert "plain WebDataset" in result.output and "tar reading alone" in result.output
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["clips"] == 23 and saved["shard_files"] == len(SIZES)
    assert min(saved["rq_samples_per_s"], saved["wds_samples_per_s"], saved["reference_samples_per_s"]) > 0
    assert saved["speedup_vs_wds"] > 0 and saved["tar_reader_speedup"] > 0
    # every round timed all three pipelines
    assert {name: len(r) for name, r in saved["rounds_wall_cpu"].items()} == {"rq": 3, "wds": 3, "folders": 3}


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory) -> Path:
    """Shards from the real product: `rq synth` clips (2 s, 64x48) through `rq preprocess kinetics`."""
    root = tmp_path_factory.mktemp("real")
    for argv in (["rq", "synth", "--preset", "kinetics", "--out", str(root / "raw"), "--clips", "8", "--classes", "2",
                  "--seconds", "2", "--size", "64x48"],
                 ["rq", "preprocess", "kinetics", "--raw", str(root / "raw"), "--out", str(root / "shards"),
                  "--audio-seconds", "2", "--frame-size", "32", "--shard-size", "0.1", "--workers", "2"]):
        done = subprocess.run(argv, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    return root / "shards"


def test_reads_shards_written_by_rq_preprocess(preprocessed):
    src = open_source(str(preprocessed))
    assert src.spec_shape == (257, 1 + (2 * 16000 - 512) // 159) and src.frames_per_clip == 3
    n_train = src.splits["train"][1]
    shard_keys = {split: [s["__key__"] for url in src.splits[split][0] for s in url_samples(url)]
                  for split in ("train", "test")}
    assert len(shard_keys["train"]) == n_train and len(src.splits["train"][0]) >= 2
    config = cfg(batch_size=2, workers=2)
    steps = math.ceil(n_train / (config.batch_size * 2))
    seen = []
    for rank in range(2):
        got = list(train_batches(src, config, epoch=0, rank=rank, world=2, steps=steps))
        assert len(got) == steps
        assert got[0]["frames"].shape == (2, 3, 3, 32, 32) and got[0]["spec"].shape == (2, 1, *src.spec_shape)
        assert all(0 <= label < len(src.classes) for b in got for label in b["label"].tolist())
        seen += [k for b in got for k in b["key"]]
    assert set(seen) == set(shard_keys["train"])
    keys = [k for rank in range(2) for b in eval_batches(src, config, rank=rank, world=2) for k in b["key"]]
    assert sorted(keys) == sorted(shard_keys["test"])


def test_the_samples_left_over_change_from_epoch_to_epoch(tmp_path):
    """One shard of 18 samples, batch 4: 2 samples sit out each epoch, and not the same 2 every time."""
    layout = write_shards(tmp_path / "one", {"train": [18]}, classes=2)
    src = open_source(str(tmp_path / "one"))
    left_out = []
    for epoch in range(4):
        seen = {k for b in train_batches(src, cfg(), epoch=epoch, rank=0, world=1, steps=4) for k in b["key"]}
        assert len(seen) == 16
        left_out.append(frozenset(set(layout["keys"]["train"]) - seen))
    assert len(set(left_out)) > 1
