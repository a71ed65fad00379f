"""Every sample of a dataset has the same member names: clips with fewer frames repeat their last frame
up to the dataset's `frames_per_sample`, the json says how many are real, and the trainer picks among
the real ones only, so the padding never changes a batch. HuggingFace `datasets` then loads the shards."""
import hashlib
import io
import json
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import lay_out, snapshot
from media import make_clip
from rq import cli
from rq.train.data.loader import DataConfig, eval_batches, train_batches
from rq.train.data.source import open_source


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, clip_bank) -> Path:
    """Shards of a folder dataset whose clips have 2 frames (1.2 s) or 3 (2.2 s) at 1 fps."""
    root = tmp_path_factory.mktemp("mixed")
    long = [make_clip(root / f"long{i}.mp4", seconds=2.2, size=(64, 48), fps=10, tone_hz=900 + 50 * i)
            for i in range(3)]
    bank = clip_bank + long
    files = {"train/a/a0.mp4": 0, "train/a/a1.mp4": 8, "train/a/a2.mp4": 1, "train/b/b0.mp4": 9,
             "train/b/b1.mp4": 2, "train/b/b2.mp4": 3, "test/a/a9.mp4": 10, "test/b/b9.mp4": 4}
    raw = lay_out(root / "raw", bank, files)
    out = root / "shards"
    result = CliRunner().invoke(cli.app, ["preprocess", "folder", "--raw", str(raw), "--out", str(out),
                                          "--frame-size", "32", "--audio-seconds", "1", "--val-fraction", "0",
                                          "--workers", "2", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def tar_samples(path: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path) as tar:
        for info in tar:
            key, suffix = info.name.split(".", 1)
            samples[key][suffix] = tar.extractfile(info).read()
    return samples


def test_every_sample_has_the_same_members_and_says_which_frames_are_real(mixed):
    manifest = json.loads((mixed / "manifest.json").read_text())
    assert manifest["frames_per_sample"] == 3
    samples = {k: s for tar in sorted(mixed.glob("*.tar")) for k, s in tar_samples(tar).items()}
    assert len(samples) == manifest["totals"]["samples"] == 8
    frames = ["f0000.jpg", "f0001.jpg", "f0002.jpg"]
    assert {tuple(sorted(s)) for s in samples.values()} == {tuple(sorted(["json", "cls", "spec.npy", *frames]))}
    real_counts = []
    for sample in samples.values():
        meta = json.loads(sample["json"])
        n = meta["n_frames"]
        real_counts.append(n)
        assert meta["frames_padded"] == 3 - n and len(meta["frame_pts"]) == n
        assert all(sample[name] == sample[frames[n - 1]] for name in frames[n:])   # padding = the last real frame
    assert sorted(real_counts) == [2] * 5 + [3] * 3
    # the padding comes from the cached frames: a rerun decodes nothing and rewrites nothing
    before = snapshot(mixed)
    result = CliRunner().invoke(cli.app, ["preprocess", "folder", "--raw", str(mixed.parent / "raw"), "--out",
                                          str(mixed), "--frame-size", "32", "--audio-seconds", "1",
                                          "--val-fraction", "0", "--workers", "2", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert snapshot(mixed) == before


def unpadded_copy(shards: Path, out: Path) -> Path:
    """The shards as rq wrote them before padding: each clip's real frames only, no `frames_padded`."""
    out.mkdir()
    manifest = json.loads((shards / "manifest.json").read_text())
    for tar_path in sorted(shards.glob("*.tar")):
        with tarfile.open(out / tar_path.name, "w") as tar:
            for key, sample in tar_samples(tar_path).items():
                meta = json.loads(sample["json"])
                del meta["frames_padded"]
                sample["json"] = json.dumps(meta).encode()
                for suffix, data in sample.items():
                    if not (suffix.endswith(".jpg") and int(suffix[1:5]) >= meta["n_frames"]):
                        info = tarfile.TarInfo(f"{key}.{suffix}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        written = (out / tar_path.name).read_bytes()   # the manifest vouches for each shard's bytes
        for entry in (s for split in manifest["splits"].values() for s in split["shards"]):
            if entry["name"] == tar_path.name:
                entry |= {"bytes": len(written), "sha256": hashlib.sha256(written).hexdigest()}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_padding_never_changes_what_is_trained_or_evaluated_on(mixed, tmp_path):
    padded, plain = open_source(str(mixed)), open_source(str(unpadded_copy(mixed, tmp_path / "plain")))
    assert padded.splits["train"][1] == plain.splits["train"][1] == 6
    cfg = DataConfig(batch_size=2, frames=3, image_size=16, workers=0, shuffle_buffer=4, pin_memory=False)
    for epoch in (0, 1):
        got = [list(train_batches(src, cfg, epoch=epoch, rank=0, world=1, steps=3)) for src in (padded, plain)]
        assert [b["key"] for b in got[0]] == [b["key"] for b in got[1]]
        for a, b in zip(*got):
            assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["spec"], b["spec"])
    # evaluation takes segment centres: of 2 real frames [0, 0, 1]; counting the padding would give [0, 1, 1]
    for random_frames in (False, True):
        cfg = DataConfig(batch_size=2, frames=3, image_size=16, workers=0, pin_memory=False,
                         random_eval_frames=random_frames)
        got = [list(eval_batches(src, cfg, split="test")) for src in (padded, plain)]
        assert sum(len(b["key"]) for b in got[0]) == 2
        for a, b in zip(*got):
            assert a["key"] == b["key"] and torch.equal(a["frames"], b["frames"])


def test_bad_padding_count_is_a_skipped_sample_naming_the_member(mixed, tmp_path):
    from rq.train.data.sample import real_frames
    sample = next(iter(tar_samples(next(mixed.glob("train-*.tar"))).values()))
    assert len(real_frames(sample)) == json.loads(sample["json"])["n_frames"]
    for bad in (b'{"frames_padded": 3}', b'{"frames_padded": -1}', b'{"frames_padded": "1"}', b"{oops"):
        with pytest.raises(ValueError, match="^json: "):
            real_frames(sample | {"json": bad})


def test_huggingface_datasets_loads_a_mixed_length_dataset(mixed, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="HuggingFace datasets is not installed (pip install 'rq[test]')")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    files = {split: sorted(str(p) for p in mixed.glob(f"{split}-*.tar")) for split in ("train", "test")}
    loaded = datasets.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    manifest = json.loads((mixed / "manifest.json").read_text())
    for split in files:
        rows = loaded[split]
        assert len(rows) == manifest["splits"][split]["samples"]
        assert {"f0000.jpg", "f0001.jpg", "f0002.jpg", "json", "cls", "spec.npy"} <= set(rows.column_names)
        assert rows[0]["f0002.jpg"].size == rows[0]["f0000.jpg"].size    # decoded as images
        assert sorted(r["n_frames"] for r in rows["json"]) == sorted(
            json.loads(s["json"])["n_frames"] for p in files[split] for s in tar_samples(Path(p)).values())
    # the same shards without the padding are what it could not load
    plain = unpadded_copy(mixed, tmp_path / "plain")
    with pytest.raises(Exception, match="same prefix or the same types"):
        datasets.load_dataset("webdataset", data_files=sorted(str(p) for p in plain.glob("train-*.tar")),
                              cache_dir=str(tmp_path / "hf-cache-plain"))
