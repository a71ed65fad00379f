"""Shards written by other tools (`webdataset.ShardWriter`, conventional member names `jpg`, `npy`, `cls`,
`json`), no rq manifest, names outside train-/test-: trained with `rq train` and evaluated with `rq eval`
through the real entry point, with classes from --classes, counts from `rq index`'s sizes.json, and splits
named on the command line. Bad inputs are one line each."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from helpers import frame_index, frame_jpeg
from rq.train.data import DataConfig, eval_batches
from rq.train.data.members import Members
from rq.train.data.source import open_shards

CLASSES = ["cat", "dog", "owl"]
SPEC = (257, 20)


def _write(pattern: str, count: int, start: int, frames: int = 1, per_shard: int = 6) -> None:
    """`count` samples in shards of `per_shard`, as another tool writes them: one `jpg` (or
    frame_<i>.jpg members, green = frame index), `npy` spectrogram, `cls` and a json with the class name."""
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0) as sink:
        for i in range(start, start + count):
            label = i % len(CLASSES)
            spec = np.full(SPEC, label, np.float32) + np.random.default_rng(i).normal(0, 0.1, SPEC).astype(np.float32)
            sample = {"__key__": f"clip{i:05d}", "npy": spec, "cls": label, "json": {"label": CLASSES[label]}}
            if frames == 1:
                sample["jpg"] = frame_jpeg(label, 48, 64)
            else:   # written out of order, and 10 after 2: the loader must put them in natural order
                sample.update({f"frame_{j}.jpg": frame_jpeg(j, 48, 64) for j in reversed(range(frames))})
            sink.write(sample)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("foreign")
    _write(str(folder / "data-%06d.tar"), 12, 0)        # data-000000.tar, data-000001.tar: 6 each
    _write(str(folder / "eval-%06d.tar"), 6, 100)
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return folder


def _shards(folder: Path) -> str:
    return f"train={folder}/data-{{000000..000001}}.tar::test={folder}/eval-000000.tar"


def _one_line(result) -> str:
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_rq_index_then_train_and_eval_on_shard_writer_shards(rq, foreign, tmp_path):
    indexed = rq("index", f"train={foreign}/data-{{000000..000001}}.tar", f"test={foreign}/eval-000000.tar")
    assert indexed.exit_code == 0, indexed.stderr
    sizes = json.loads((foreign / "sizes.json").read_text())
    assert sizes == {"data-000000.tar": 6, "data-000001.tar": 6, "eval-000000.tar": 6}
    wids = json.loads((foreign / "train.wids.json").read_text())
    assert wids["wids_version"] == 1 and [s["nsamples"] for s in wids["shardlist"]] == [6, 6]
    wids_package = pytest.importorskip("wids", reason="the wids package is not installed (pip install 'rq[test]')")
    dataset = wids_package.ShardListDataset(str(foreign / "train.wids.json"), cache_dir=str(tmp_path / "wids-cache"))
    assert len(dataset) == 12 and dataset[7][".npy"] is not None

    run = tmp_path / "run"
    trained = rq("train", "--shards", _shards(foreign), "--frames-key", "jpg", "--spec-key", "npy",
                 "--label-key", "json.label", "--classes", foreign / "classes.txt", "--preset", "tiny",
                 "--epochs", 1, "--batch-size", 4, "--workers", 0, "--device", "cpu", "--out", run)
    assert trained.exit_code == 0, trained.stderr
    # the counts are sizes.json's: 12 train samples, 3 steps of 4
    assert "12 train / 0 val / 6 test samples, 3 classes" in trained.stdout and "3 steps/epoch" in trained.stdout
    epoch = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert epoch["train"]["samples"] == 12 and epoch["train"]["skipped_samples"] == 0
    assert epoch["test"]["samples"] == 6 and epoch["test"]["unique_samples"] == 6

    # rq eval reads the integer `cls` labels this time: the same samples, the same labels
    evaluated = rq("eval", "--ckpt", run / "last.pt", "--shards", _shards(foreign), "--frames-key", "jpg",
                   "--spec-key", "npy", "--label-key", "cls", "--classes", foreign / "classes.txt",
                   "--workers", 0, "--device", "cpu", "--out", tmp_path / "eval")
    assert evaluated.exit_code == 0, evaluated.stderr
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert result["clean"]["samples"] == 6
    assert result["clean"]["acc"] == pytest.approx(epoch["test"]["acc"])


def test_frames_by_glob_come_in_natural_order_and_count_the_clip(tmp_path):
    _write(str(tmp_path / "clips-%06d.tar"), 4, 0, frames=11, per_shard=4)
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES))
    src = open_shards(f"test={tmp_path}/clips-000000.tar", {"frames_key": "frame_*.jpg", "spec_key": "npy",
                                                           "classes": str(tmp_path / "classes.txt")})
    assert src.frames_per_clip == 11 and src.spec_shape == SPEC and src.splits["test"][1] is None
    batch = next(iter(eval_batches(src, DataConfig(batch_size=4, frames=11, image_size=32, workers=0))))
    frames = batch["frames"].permute(0, 1, 3, 4, 2).numpy()
    assert [frame_index(f) for f in frames[0]] == list(range(11))
    assert batch["label"].tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize("index, name, content, code, message", [
    ("path", "sizes.json", {"../x.tar": 3}, 2, "'../x.tar' is not a plain file name"),
    ("pipe", "train.wids.json", {"wids_version": 1, "shardlist": [{"url": "pipe:touch owned.tar", "nsamples": 6}]},
     2, "looks like a URL or a command"),
    ("count", "sizes.json", {"data-000000.tar": 6, "data-000001.tar": -1}, 2, "must be a whole number"),
])
def test_hostile_index_is_one_line(rq, foreign, tmp_path, index, name, content, code, message):
    folder = tmp_path / index
    folder.mkdir()
    for shard in ("data-000000.tar", "data-000001.tar"):
        (folder / shard).symlink_to(foreign / shard)
    (folder / name).write_text(json.dumps(content))
    result = rq("train", "--shards", f"train={folder}/data-{{000000..000001}}.tar", "--spec-key", "npy",
                "--frames-key", "jpg", "--classes", foreign / "classes.txt", "--preset", "tiny", "--workers", 0,
                "--device", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == code and message in _one_line(result)
    assert not (Path.cwd() / "owned.tar").exists() and not (folder / "owned.tar").exists()


def test_a_wrong_count_leaves_the_shard_out(rq, foreign, tmp_path):
    (tmp_path / "data-000000.tar").symlink_to(foreign / "data-000000.tar")
    (tmp_path / "sizes.json").write_text(json.dumps({"data-000000.tar": 7}))
    result = rq("train", "--shards", f"train={tmp_path}/data-000000.tar", "--spec-key", "npy", "--frames-key", "jpg",
                "--classes", foreign / "classes.txt", "--preset", "tiny", "--epochs", 1, "--batch-size", 4,
                "--workers", 0, "--device", "cpu", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    assert "holds 6 samples, sizes.json says 7: shard left out" in result.stderr
    assert "only 0 of 1 batches could be read" in result.stderr


@pytest.mark.parametrize("options, code, message", [
    (["--spec-key", "spectrogram.npy", "--frames-key", "jpg"], 1,
     "no readable 2-D spectrogram 'spectrogram.npy' (--spec-key) in the first samples of any shard (their members: "
     "cls, jpg, json, npy"),
    (["--spec-key", "npy", "--frames-key", "png"], 2, "no readable JPEG frame 'png' (--frames-key)"),
    (["--spec-key", "npy", "--frames-key", "jpg", "--classes", "/nope.txt"], 1, "--classes /nope.txt: no such file"),
])
def test_bad_member_options_are_one_line(rq, foreign, tmp_path, options, code, message):
    options = options if "--classes" in options else [*options, "--classes", foreign / "classes.txt"]
    result = rq("train", "--shards", _shards(foreign), *options, "--workers", 0, "--device", "cpu",
                "--out", tmp_path / "run")
    assert result.exit_code == code and message in _one_line(result)


def test_shards_without_classes_or_split_names_say_what_to_pass(rq, foreign, tmp_path):
    no_classes = rq("train", "--shards", _shards(foreign), "--out", tmp_path / "a")
    assert no_classes.exit_code == 1 and "pass --classes FILE" in _one_line(no_classes)
    unnamed = rq("train", "--shards", f"{foreign}/data-{{000000..000001}}.tar", "--out", tmp_path / "b")
    assert unnamed.exit_code == 1 and "cannot tell the split; name it, e.g. --shards 'train=" in _one_line(unnamed)


@pytest.mark.parametrize("key, member, data, label", [
    ("json.label", "json", b'{"label": "owl"}', 2),          # a name, looked up in the classes
    ("json.label", "json", b'{"label": 1}', 1),              # an index
    ("meta.json.y.name", "meta.json", b'{"y": {"name": "dog"}}', 1),
    ("label.txt", "label.txt", b"cat\n", 0),
    ("cls", "cls", b"2", 2),
])
def test_label_keys(key, member, data, label):
    assert Members(label=key, classes=tuple(CLASSES)).label_of({member: data}) == label


@pytest.mark.parametrize("key, data, message", [
    ("json.label", b'{"label": "emu"}', "label 'emu' of 'json.label' (--label-key) is not one of the classes"),
    ("json.y", b'{"label": 1}', "json has no y (--label-key json.y)"),
    ("json.label", b'{"label": [1]}', "is neither a class index nor a name"),
    ("json.label", b'{"label"', "json: not valid JSON"),
])
def test_bad_labels_name_the_member(key, data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Members(label=key, classes=tuple(CLASSES)).label_of({"json": data})
