"""Outputs of rq 0.1 still load. Its checkpoints named the model's parameters after one fixed class
(`audio.*`, `visual.*`, `fusion_cls`, `fusion.N.*`, `fusion_norm.*`, `audio_probe.*`, ...), kept the
optimiser state in that module order without names, and stored a flat config (`rq_beta`, ...,
`fusion_layers: 0` for the preset's). The test writes such a checkpoint from a real run, exactly in
that layout (tests/helpers.py write_v01), then resumes and evaluates from it with today's code
(tests/test_predict.py predicts from one)."""
import json
from dataclasses import replace

import pytest
import torch

from helpers import write_shards, write_v01
from rq.train.trainer.checkpoint import load_checkpoint
from rq.train.trainer.config import TrainConfig
from rq.train.trainer.fit import fit

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compat")
    write_shards(root / "shards", {"train": [9, 7], "test": [5, 4]}, classes=3, n_frames=3, spec_shape=(257, 20),
                 frames_per_clip=2)
    cfg = TrainConfig.from_options(str(root / "shards"), "tiny", out=str(root / "straight"), workers=0, batch_size=4,
                                   epochs=2, device="cpu", optimizer="sgd", rq_beta=0.0)
    fit(cfg)
    fit(replace(cfg, out=str(root / "half"), stop_after=1))
    write_v01(root / "half", root / "old")
    return root, cfg


def test_a_v01_checkpoint_resumes_to_the_same_weights(runs):
    root, cfg = runs
    old = load_checkpoint(root / "old" / "last.pt")
    assert "fusion_cls" in old["model"] and "param_names" not in old and old["config"]["fusion_layers"] == 0
    fit(replace(cfg, out=str(root / "old"), resume=True))
    a, b = (load_checkpoint(root / d / "last.pt") for d in ("straight", "old"))
    assert a["model"].keys() == b["model"].keys()
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name       # momentum buffers were matched by name
    assert TrainConfig.from_dict(b["config"]).rollingq == cfg.rollingq


def test_a_v01_checkpoint_evaluates_the_same(runs, rq, tmp_path):
    root, _ = runs
    write_v01(root / "half", tmp_path / "old")      # its own copy: the resume test continues root/old
    results = {}
    for run in (root / "half", tmp_path / "old"):
        result = rq("eval", "--ckpt", run / "last.pt", "--shards", root / "shards", "--workers", 0,
                    "--device", "cpu", "--out", tmp_path / "eval" / run.name)
        assert result.exit_code == 0, result.output
        results[run.name] = json.loads((tmp_path / "eval" / run.name / "eval.json").read_text())["clean"]
    assert results["old"] == results["half"]
