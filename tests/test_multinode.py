"""Training across machines, on one machine: two torchrun agents ("nodes", one gloo process each, c10d
rendezvous on 127.0.0.1) and two processes launched the way srun does (SLURM variables, no torchrun)
train to exactly the weights one agent with 2 processes reaches (the same world size, so the same
data per rank). Then the run resumes on one process: it goes on, with a warning. The SLURM variables'
parsing is checked on its own below."""
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import python_env, rq_script, write_shards
from rq.train.trainer.checkpoint import load_checkpoint
from rq.train.trainer.ranks import SLURM_PORT_BASE, Launch, first_host, read_launch, tasks_per_node

RQ = rq_script()
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _port(lowest: int = 0) -> int:
    """A free port on 127.0.0.1 (from `lowest` up to the ephemeral range when given)."""
    for port in ([0] if not lowest else random.sample(range(lowest, 32000), 200)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise AssertionError("no free port")


def _train(shards: Path, out: Path) -> list[str]:
    return ["train", "--shards", str(shards), "--preset", "tiny", "--method", "rollingq", "--epochs", "2",
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--out", str(out)]


def _run_all(commands: list[list[str]], envs: list[dict], tmp_path: Path) -> None:
    """Start every command at once (each in its own session), wait for all; a hang is killed whole."""
    base = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **python_env()}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**base, **env}, start_new_session=True) for cmd, env in zip(commands, envs)]
    try:
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    except subprocess.TimeoutExpired:
        outputs = ["hung"] * len(procs)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    for p, output in zip(procs, outputs):
        assert p.returncode == 0, output[-3000:]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "last.pt")["model"]


@pytest.mark.timeout(600)
def test_two_nodes_and_srun_train_what_one_node_trains(tmp_path, rq):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [8, 8], "test": [4]}, classes=3, n_frames=3, spec_shape=(257, 20),
                 frames_per_clip=2)
    one, two, slurm = tmp_path / "one-node", tmp_path / "two-nodes", tmp_path / "srun"

    endpoint = f"127.0.0.1:{_port()}"
    _run_all([[*TORCHRUN, "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
               endpoint, RQ, *_train(shards, one)]], [{}], tmp_path)

    endpoint = f"127.0.0.1:{_port()}"
    nodes = [[*TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
              endpoint, "--node-rank", str(rank), RQ, *_train(shards, two)] for rank in (0, 1)]
    # as srun sets them for `srun --nodes 2 --ntasks-per-node 1 rq train ...` (the port comes from the job id)
    job = str(_port(lowest=SLURM_PORT_BASE) - SLURM_PORT_BASE)
    slurm_env = [{"SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "0",
                  "SLURM_NODEID": str(rank), "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "SLURM_STEP_NODELIST": "127.0.0.1",
                  "SLURM_JOB_ID": job, "SLURM_NTASKS": "2"} for rank in (0, 1)]
    _run_all(nodes + [[RQ, *_train(shards, slurm)]] * 2, [{}, {}, *slurm_env], tmp_path)

    reference = _weights(one)
    for run in (two, slurm):
        weights = _weights(run)
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference), run.name
    assert load_checkpoint(two / "last.pt")["epoch"] == 1

    # The run goes on in one process (another node count): it says how its batches change.
    resumed = rq("train", "--resume", "--out", one, "--shards", shards, "--epochs", "3", "--workers", "0",
                     "--device", "cpu")
    assert resumed.exit_code == 0, resumed.stderr
    assert "saved by 2 process(es) and resumes on 1: the global batch is now 4 (was 8)" in resumed.stderr
    assert load_checkpoint(one / "last.pt")["epoch"] == 2


def test_slurm_variables():
    srun = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "2",
            "SLURM_STEP_TASKS_PER_NODE": "2(x3),2", "SLURM_STEP_NODELIST": "gpu[07-09,12]", "SLURM_JOB_ID": "123456",
            "SLURM_NTASKS": "8", "SLURM_CPUS_PER_TASK": "6"}
    assert read_launch(srun) == Launch(5, 8, 1, 2, "slurm", "gpu07", 12000 + 123456 % 20000)
    given = read_launch({**srun, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "4000"})   # set: kept
    assert (given.master_addr, given.master_port) == ("127.0.0.1", 4000)
    # A batch script running rq itself (no srun step): one process, not rank 0 of 8 that never come.
    assert read_launch({k: v for k, v in srun.items() if not k.startswith("SLURM_STEP")}).launcher == "single"
    # torchrun's variables win (torchrun inside an srun allocation)
    assert read_launch({**srun, "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}).rank == 3
    assert first_host("node-a1") == "node-a1"
    assert first_host("rack[2-3]-n[07,9],login1") == "rack2-n07"
    assert tasks_per_node("4,1(x2)") == [4, 1, 1]
    with pytest.raises(ValueError, match="out of range"):
        read_launch({**srun, "SLURM_PROCID": "8"})
