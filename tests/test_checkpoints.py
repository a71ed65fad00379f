"""Checkpoints beyond one per epoch: a run killed (SIGKILL) mid-epoch with --checkpoint-every-steps
resumes to exactly the weights, metrics and RollingQ decisions of an uninterrupted run; --save-every
keeps epoch checkpoints; the training bar shows the loss, the learning rate and the run's ETA."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import kill_mid_epoch, write_shards
from rq.train.trainer.checkpoint import load_checkpoint

# 24 train samples in 3 shards, batch 4: 6 steps per epoch; RollingQ's controller has statistics to keep.
OPTIONS = ("--preset", "tiny", "--method", "rollingq", "--batch-size", "4", "--epochs", "2", "--device", "cpu",
           "--workers", "1", "--rq-beta", "0", "--checkpoint-every-steps", "1")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mid") / "shards"
    write_shards(out, {"train": [9, 7, 8], "val": [4], "test": [5, 4]}, classes=3, n_frames=3, spec_shape=(257, 20),
                 frames_per_clip=2)
    return out


def train(shards: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rq.cli", "train", "--shards", str(shards), *OPTIONS, "--out",
                           str(out), *extra], capture_output=True, text=True, timeout=300)


def lines(run: Path) -> list[dict]:
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]


def test_killed_mid_epoch_resumes_to_the_uninterrupted_weights(shards, tmp_path):
    straight = train(shards, tmp_path / "straight", "--save-every", "1")
    assert straight.returncode == 0, straight.stderr[-2000:]
    # the bar: loss, learning rate and the whole run's ETA
    assert "run ETA" in straight.stderr and "loss " in straight.stderr and ", lr " in straight.stderr
    kept = {p.name for p in (tmp_path / "straight").glob("epoch*.pt")}
    assert kept == {"epoch0.pt", "epoch1.pt"} and "(kept as epoch1.pt)" in straight.stdout
    assert load_checkpoint(tmp_path / "straight" / "epoch0.pt")["epoch"] == 0

    proc = subprocess.Popen([sys.executable, "-m", "rq.cli", "train", "--shards", str(shards), *OPTIONS, "--out",
                             str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    left = kill_mid_epoch(proc, tmp_path / "killed" / "last.pt", epoch=1)
    mid = left["mid_epoch"]
    assert mid["epoch"] == 1 and 1 <= mid["step"] < 6 and left["epoch"] == 0 and len(mid["ranks"]) == 1
    resumed = train(shards, tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a, b = (load_checkpoint(tmp_path / run / "last.pt") for run in ("straight", "killed"))
    assert "mid_epoch" not in b and b["epoch"] == 1
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for param, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][param][name])), name
    # the resumed epoch's metrics cover the whole epoch (the part before the kill was restored)
    for x, y in zip(lines(tmp_path / "straight"), lines(tmp_path / "killed"), strict=True):
        for field in ("samples", "loss", "acc", "air", "share_audio"):
            assert x["train"][field] == y["train"][field], (x["epoch"], field)
        assert x["rollingq"] == y["rollingq"] and x["test"]["acc"] == y["test"]["acc"]


def test_checkpoint_options_are_checked(shards, tmp_path):
    done = train(shards, tmp_path / "bad", "--checkpoint-every-steps", "-1")
    assert done.returncode == 2 and "--checkpoint-every-steps" in done.stderr and "Traceback" not in done.stderr
