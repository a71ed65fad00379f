"""Two gloo processes on the CPU under torchrun, on uneven shards (5, 7 and 11 samples): no hang,
the same number of steps on both ranks, one writer of checkpoints and metrics, evaluation that
counts every test sample exactly once, and a run killed mid-epoch resuming to the same weights."""
import json
import os
import signal
import subprocess
import sys

import torch

from helpers import kill_mid_epoch, python_env, rq_script, write_shards
from rq.train.evaluation.evaluate import EvalConfig, evaluate_checkpoint
from rq.train.trainer.checkpoint import load_checkpoint


def _start(tmp_path, *args: str, **pipes) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           rq_script(), *args]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.Popen(cmd, text=True, env={**env, **python_env()}, start_new_session=True, **pipes)


def _torchrun(tmp_path, *args: str) -> str:
    """`rq ARGS` on 2 gloo ranks; its stdout. A hang (the bug this test is for) is killed whole and reported."""
    proc = _start(tmp_path, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"2-rank {args[0]} hung; last output:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def test_two_gloo_ranks_on_uneven_shards(tmp_path):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [5, 7, 11], "test": [5, 7, 11]}, classes=3, n_frames=3, spec_shape=(257, 20),
                 frames_per_clip=2)
    out = tmp_path / "run"
    train = ("train", "--shards", str(shards), "--preset", "tiny", "--method", "rollingq", "--rq-beta", "0",
             "--epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu", "--checkpoint-every-steps", "1")
    stdout = _torchrun(tmp_path, *train, "--out", str(out))

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
    # the Pearson test's noisy samples: exactly round(0.5 x 23) = 12, the same set as on one process
    eval_args = ("eval", "--ckpt", str(out / "last.pt"), "--shards", str(shards), "--noise-modality", "audio",
                 "--noise-levels", "0", "--noisy-fraction", "0.5", "--workers", "0", "--device", "cpu")
    _torchrun(tmp_path, *eval_args, "--out", str(tmp_path / "eval2"))
    evaluate_checkpoint(EvalConfig(ckpt=str(out / "last.pt"), shards=str(shards), noise_modality="audio",
                                   noise_levels=(0.0,), noisy_fraction=0.5, workers=0, device="cpu",
                                   out=str(tmp_path / "eval1")))
    two, one = (json.loads((tmp_path / f"eval{n}" / "per_sample.json").read_text()) for n in (2, 1))
    assert two["keys"] == one["keys"] and len(two["keys"]) == 23
    assert two["pearson"]["noisy"] == one["pearson"]["noisy"] and sum(two["pearson"]["noisy"]) == 12
    assert two["clean"]["correct"] == one["clean"]["correct"]

    # Killed (the whole launch, SIGKILL) after step 1 of epoch 1's 2, resumed on 2 ranks: the same weights.
    killed = tmp_path / "killed"
    proc = _start(tmp_path, *train, "--out", str(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mid = kill_mid_epoch(proc, killed / "last.pt", epoch=1)["mid_epoch"]
    assert mid["step"] == 1 and len(mid["ranks"]) == 2
    _torchrun(tmp_path, *train, "--out", str(killed), "--resume")
    a, b = (load_checkpoint(d / "last.pt")["model"] for d in (out, killed))
    assert all(torch.equal(a[k], b[k]) for k in a)
