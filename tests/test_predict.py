"""`rq predict` on raw videos: a checkpoint trained by `rq train` on shards `rq preprocess folder` made
from real ffmpeg clips; good videos get predictions, bad ones one line each."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from media import make_clip
from rq.pipeline.stages import STAGES


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """{"ckpt", "good": [two clips not in the shards], "shards"}."""
    from typer.testing import CliRunner

    from rq import cli
    root = tmp_path_factory.mktemp("predict")
    raw = root / "raw"
    for split, count in (("train", 3), ("test", 1)):
        for c, hz, colour in (("low", 300, "red"), ("high", 1200, "blue")):
            for i in range(count):
                (raw / split / c).mkdir(parents=True, exist_ok=True)
                make_clip(raw / split / c / f"{c}{i}.mp4", seconds=1.2, size=(64, 48), fps=10, tone_hz=hz,
                          color=colour)
    good = [make_clip(root / name, seconds=1.6, size=(80, 48), fps=12, tone_hz=hz, color=colour)
            for name, hz, colour in (("new low.mp4", 300, "red"), ("new-high.mkv", 1200, "blue"))]
    invoke = CliRunner().invoke
    shards = root / "shards"
    result = invoke(cli.app, ["preprocess", "folder", "--raw", str(raw), "--out", str(shards), "--frame-size", "32",
                              "--audio-seconds", "1", "--hop-length", "160", "--workers", "2"])
    assert result.exit_code == 0, result.output
    result = invoke(cli.app, ["train", "--shards", str(shards), "--preset", "tiny", "--method", "rollingq",
                              "--out", str(root / "run"), "--epochs", "1", "--batch-size", "4", "--workers", "0",
                              "--device", "cpu", "--image-size", "32"])
    assert result.exit_code == 0, result.output
    return {"ckpt": root / "run" / "last.pt", "good": good, "shards": shards}


def test_predict_good_and_bad(rq, trained, tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    missing = tmp_path / "missing.mp4"
    result = rq("predict", "--ckpt", trained["ckpt"], trained["good"][0], bad, missing, "--top", "2")
    assert result.exit_code == 0, result.output
    errors = re.findall(r"error: [^\r\n]*", result.stderr)
    assert len(errors) == 2, result.stderr
    assert str(bad) in errors[0] and "probe" in errors[0] and str(missing) in errors[1]
    assert "Traceback" not in result.output
    assert "1 of 3 videos" in result.stdout and "2 failed" in result.stdout
    assert ("low" in result.stdout or "high" in result.stdout) and "attn audio" in result.stdout


def test_predict_json(rq, trained, tmp_path):
    bad = tmp_path / "empty.mkv"
    bad.write_bytes(b"")
    result = rq("predict", "--ckpt", trained["ckpt"], *trained["good"], bad, "--json", "--top", "5")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [p["video"] for p in doc["predictions"]] == [str(v) for v in trained["good"]]
    for p in doc["predictions"]:
        assert [t["class"] for t in p["top"]] and len(p["top"]) == 2  # only 2 classes: top 5 -> 2
        assert {t["class"] for t in p["top"]} == {"high", "low"}
        assert abs(sum(t["prob"] for t in p["top"]) - 1) < 1e-3
        assert p["top"][0]["prob"] >= p["top"][1]["prob"]
        share = p["attention"]
        assert 0 <= share["audio"] <= 1 and 0 <= share["visual"] <= 1 and share["audio"] + share["visual"] <= 1 + 1e-6
        assert p["frames"] == 2  # 1.6 s at 1 fps: frames at t = 0 and 1
    assert doc["errors"] == [{"video": str(bad), "stage": "probe", "reason": doc["errors"][0]["reason"]}]


def test_predict_matches_the_shards(trained):
    """The spectrogram and frames predict feeds the model are those a shard sample of the same clip holds."""
    import webdataset as wds

    from rq.train.evaluation.predict import load_predictor
    predictor = load_predictor(trained["ckpt"], "cpu")
    test_tar = sorted(trained["shards"].glob("test-*.tar"))[0]
    sample = next(iter(wds.WebDataset(str(test_tar), shardshuffle=False)))
    meta = json.loads(sample["json"])
    raw = trained["shards"].parent / "raw" / meta["source"]
    members = predictor.stage_outputs(raw, timeout=60)
    assert members["spec.npy"] == sample["spec.npy"]
    frames = sorted(k for k in members if k.endswith(".jpg"))
    assert frames and all(members[k] == sample[k] for k in frames)
    assert set(predictor.stage_settings) == {st.name for st in STAGES}
    assert predictor.stage_settings["spectrogram"].hop_length == 160


def test_predict_errors(rq, trained, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    result = rq("predict", "--ckpt", trained["ckpt"], bad)
    assert result.exit_code == 1 and "0 of 1 videos" in result.stdout
    assert re.findall(r"error: [^\r\n]*", result.stderr) == [f"error: {bad}: probe: ffmpeg: Invalid data found "
                                                              "when processing input"]
    result = rq("predict", "--ckpt", trained["ckpt"])
    assert result.exit_code == 2 and "VIDEO" in result.stderr
    result = rq("predict", trained["good"][0])
    assert result.exit_code == 2 and "--ckpt" in result.stderr
    result = rq("predict", "--ckpt", bad, trained["good"][0])
    assert result.exit_code == 2 and "not a checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = rq("predict", "--ckpt", trained["ckpt"], trained["good"][0], "--top", "0")
    assert result.exit_code == 2 and "--top" in result.stderr


def test_predict_without_the_shards_manifest(rq, trained, tmp_path):
    """A checkpoint whose shards are gone and that carries no settings: one clear usage error."""
    from rq.train.trainer.checkpoint import load_checkpoint, save_checkpoint
    state = load_checkpoint(trained["ckpt"])
    state["config"]["shards"] = str(tmp_path / "gone")
    state.pop("preprocess", None)
    moved = tmp_path / "moved.pt"
    save_checkpoint(state, moved)
    result = rq("predict", "--ckpt", moved, trained["good"][0])
    assert result.exit_code == 2 and "preprocessing settings" in result.stderr
    assert torch.load(moved, weights_only=True)["classes"] == ["high", "low"]


def test_predict_needs_no_shards_when_the_checkpoint_carries_its_settings(rq, trained, tmp_path):
    """rq train stores the shards' preprocessing config in the checkpoint: predict works with the shards gone."""
    from rq.train.trainer.checkpoint import load_checkpoint, save_checkpoint
    state = load_checkpoint(trained["ckpt"])
    manifest = json.loads((Path(state["config"]["shards"]) / "manifest.json").read_text())
    assert state["preprocess"] == manifest["config"]
    state["config"]["shards"] = str(tmp_path / "gone")
    moved = tmp_path / "moved.pt"
    save_checkpoint(state, moved)
    result = rq("predict", "--ckpt", moved, trained["good"][0], "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["predictions"][0]["top"]


def test_a_v01_checkpoint_predicts_the_same(trained, tmp_path):
    """A checkpoint in rq 0.1's layout (tests/test_compat.py says what that is) gives the same predictions."""
    from helpers import write_v01
    from rq.train.evaluation.predict import load_predictor
    write_v01(trained["ckpt"].parent, tmp_path / "old")
    new, old = (load_predictor(ckpt, device="cpu") for ckpt in (trained["ckpt"], tmp_path / "old" / "last.pt"))
    assert not new.cfg.differences(old.cfg)
    for video in trained["good"]:
        assert new.predict(video, top=2) == old.predict(video, top=2)


def test_the_manifest_config_reads_back_as_the_same_settings(trained):
    from rq.pipeline.config import PreprocessConfig
    from rq.pipeline.manifest import read_manifest
    config = read_manifest(trained["shards"])["config"]
    assert PreprocessConfig.from_dict(config).to_dict({s.name: s.version for s in STAGES}) == config
    assert PreprocessConfig.from_dict(config).spectrogram.hop_length == 160
    with pytest.raises(ValueError, match="does not know: colour"):
        PreprocessConfig.from_dict({**config, "frames": {**config["frames"], "colour": "sepia"}})
