"""Where this process stands in a launch, read from the launcher's variables: the one place rq reads
them (train/trainer/distributed.py joins the process group with what this finds; no torch here).

  torchrun (any --nnodes, any rendezvous)  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT
  srun, without torchrun                   SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID,
                                           SLURM_STEP_TASKS_PER_NODE + SLURM_NODEID; MASTER_ADDR / MASTER_PORT
                                           when set, else the step's first node and a port from the job id
  anything else                            one process

SLURM's step variables (srun sets them), not the job's SLURM_NTASKS: a batch script that runs
`rq train` itself, without srun, is one process, not rank 0 of a world that never comes."""
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_PORT = 29500        # torch's own default, for RANK / WORLD_SIZE set by hand on one machine
SLURM_PORT_BASE = 12000     # + job id % SLURM_PORT_SPAN: jobs sharing a node get different ports,
SLURM_PORT_SPAN = 20000     # all below Linux's ephemeral range (32768 and up)


@dataclass(frozen=True)
class Launch:
    rank: int
    world: int
    local_rank: int           # this process's index on its machine (its GPU)
    local_world: int          # training processes on this machine
    launcher: str             # "torchrun", "slurm" or "single"
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT


def read_launch(env: Mapping[str, str] = os.environ) -> Launch:
    """This process's launch. ValueError (one line) for variables that contradict each other."""
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
        launch = Launch(rank, world, _int(env, "LOCAL_RANK", 0), _int(env, "LOCAL_WORLD_SIZE", 1), "torchrun",
                        env.get("MASTER_ADDR", "127.0.0.1"), _int(env, "MASTER_PORT", DEFAULT_PORT))
    elif "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env and _int(env, "SLURM_STEP_NUM_TASKS") > 1:
        per_node = tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE", ""))
        node = _int(env, "SLURM_NODEID", 0)
        addr = env.get("MASTER_ADDR") or first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
                                                    or env.get("SLURM_NODELIST", ""))
        port = _int(env, "MASTER_PORT", 0) or SLURM_PORT_BASE + _int(env, "SLURM_JOB_ID", 0) % SLURM_PORT_SPAN
        launch = Launch(_int(env, "SLURM_PROCID"), _int(env, "SLURM_STEP_NUM_TASKS"), _int(env, "SLURM_LOCALID", 0),
                        per_node[node] if node < len(per_node) else 1, "slurm", addr or "127.0.0.1", port)
    else:
        return Launch(0, 1, 0, 1, "single")
    if not (0 <= launch.rank < launch.world and 0 <= launch.local_rank < max(1, launch.local_world)):
        raise ValueError(f"{launch.launcher} variables out of range: rank {launch.rank} of {launch.world}, "
                         f"local rank {launch.local_rank} of {launch.local_world}")
    return launch


def cores_per_process(env: Mapping[str, str] = os.environ) -> int:
    """The cores one training process (and its loader workers) may use: SLURM_CPUS_PER_TASK under srun
    (each task is given its own), else this process's cores shared by the machine's training processes."""
    launch = read_launch(env)
    if launch.launcher == "slurm" and env.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return max(1, int(env["SLURM_CPUS_PER_TASK"]))
    return max(1, len(os.sched_getaffinity(0)) // max(1, launch.local_world))


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list: "gpu[03-05,9],cpu1" -> "gpu03", "rack[1-2]-n[7-8]" -> "rack1-n7"."""
    first = re.split(r",(?![^\[]*\])", nodelist.strip(), maxsplit=1)[0]
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], first)


def tasks_per_node(spec: str) -> list[int]:
    """SLURM's tasks-per-node form, one count per node: "2(x3),1" -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in filter(None, spec.split(",")):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if m is None:
            raise ValueError(f"SLURM tasks per node {spec!r}: not of the form 2(x3),1")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None or value == "":
        if default is None:
            raise ValueError(f"${name} is not set")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"${name}={value!r} is not a whole number") from None
