"""Two gloo processes on the CPU under torchrun, on uneven shards (5, 7 and 11 samples): no hang,
the same number of steps on both ranks, one writer of checkpoints and metrics, and evaluation that
counts every test sample exactly once."""
import json
import os
import shutil
import signal
import subprocess
import sys

from helpers import write_shards
from rq.train.trainer.checkpoint import load_checkpoint


def test_two_gloo_ranks_on_uneven_shards(tmp_path):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [5, 7, 11], "test": [5, 7, 11]}, classes=3, n_frames=3, spec_shape=(257, 20),
                 frames_per_clip=2)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           shutil.which("rq"), "train", "--shards", str(shards), "--preset", "tiny", "--method", "rollingq",
           "--rq-beta", "0", "--epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu",
           "--out", str(out)]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    # Own process group, so a hang (the bug this test is for) is killed whole and reported.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**env, **_python_env()}, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"2-rank training hung; last output:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]

    history = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1]  # one writer: no duplicated lines
    for h in history:
        assert h["train"]["steps_per_rank"] == [2, 2]  # 23 samples // (4 x 2 ranks), on both ranks
        assert h["train"]["samples"] == 16
        assert h["test"]["samples"] == h["test"]["unique_samples"] == 23  # every test sample exactly once
    assert history[0]["rollingq"][0]["rotated"]  # statistics reduced over both ranks, then rotated
    assert stdout.count("saved ") == 2  # checkpoints written once per epoch, by rank 0 only
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "config.json", "last.pt", "metrics.jsonl", "summary.csv",
                                                      "tb"]
    assert load_checkpoint(out / "last.pt")["epoch"] == 1


def _python_env() -> dict:
    """The parent's Python environment (venv, PYTHONPATH), minus anything that names a rank."""
    keep = ("PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "RQ_FFMPEG")
    return {k: v for k, v in os.environ.items() if k in keep}
