"""A run folder survives kills (issue 10, point 3): metrics.jsonl with a torn last line resumes, and
best.pt / last.pt always agree with the run's state, also when `rq train` is SIGKILLed at the moment it
commits an epoch (real processes, killed from outside)."""
import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from helpers import write_shards
from rq.train.trainer.checkpoint import load_checkpoint
from rq.train.trainer.config import TrainConfig
from rq.train.trainer.fit import fit


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runfolder") / "shards"
    write_shards(folder, {"train": [8], "test": [4]}, classes=2, n_frames=2, spec_shape=(257, 20))
    return folder


def config(shards, out, **kw) -> TrainConfig:
    return TrainConfig.from_options(str(shards), "tiny", out=str(out), workers=0, batch_size=4, device="cpu",
                                    **{"epochs": 2, **kw})


def best_epoch(run) -> int:
    """The epoch metrics.jsonl records as selected for best.pt (the last one, on shards without val)."""
    return json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["selection"]["best_epoch"]


def test_a_torn_metrics_tail_is_left_out_on_resume(shards, tmp_path, capsys):
    run = tmp_path / "run"
    fit(config(shards, run, stop_after=1))
    with open(run / "metrics.jsonl", "a") as f:   # what an appending writer leaves when killed mid-line
        f.write('{"epoch": 1, "train": {"loss": 0.6')
    capsys.readouterr()
    fit(replace(config(shards, run), resume=True))
    assert "metrics.jsonl: its last line (2) was cut off (34 bytes without a newline)" in capsys.readouterr().err
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1]


def test_best_pt_is_remade_when_a_kill_left_it_behind_last_pt(shards, tmp_path, capsys):
    """A kill between last.pt and best.pt of a best epoch: last.pt says "this epoch is the best"."""
    run = tmp_path / "run"
    fit(config(shards, run, stop_after=1))           # epoch 0 is the best so far: best.pt = last.pt
    (run / "best.pt").unlink()                       # the kill came before best.pt was in place
    capsys.readouterr()
    fit(replace(config(shards, run), resume=True))
    assert "best.pt was not the checkpoint of the best epoch (0" in capsys.readouterr().err
    assert load_checkpoint(run / "best.pt")["epoch"] == best_epoch(run)


def cli(*args) -> list[str]:
    return [sys.executable, "-c", "from rq import cli; cli.main()", *map(str, args)]


def test_sigkill_when_an_epoch_commits_then_resume_matches_an_uninterrupted_run(shards, tmp_path):
    reference = tmp_path / "reference"
    fit(config(shards, reference))
    run = tmp_path / "run"
    argv = cli("train", "--shards", shards, "--out", run, "--preset", "tiny", "--workers", 0, "--batch-size", 4,
               "--device", "cpu", "--epochs", 2)
    # Killed the moment epoch 0's last.pt is in place: before, during or after its best.pt copy.
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not _epochs_in(run / "last.pt", 1):
        time.sleep(0.001)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run(argv + ["--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = (load_checkpoint(d / "last.pt") for d in (reference, run))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert best_epoch(run) == best_epoch(reference)
    assert load_checkpoint(run / "best.pt")["epoch"] == best_epoch(run) == b["selection"]["best_epoch"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


def _epochs_in(path, n: int, seen: dict = {}) -> bool:
    """Whether the checkpoint at `path` is in place and holds epoch n - 1 (read only when it changed)."""
    try:
        stamp = path.stat().st_mtime_ns
        if seen.get(path) != stamp:
            seen[path] = stamp
            seen[path, "epoch"] = load_checkpoint(path)["epoch"]
        return seen[path, "epoch"] == n - 1
    except Exception:   # not there yet, or being replaced right now
        seen.pop(path, None)
        return False
