"""The one module that talks to torch.distributed, with the launch that ranks.py reads (torchrun on
one or many machines, or srun without torchrun). Everything else asks it for `env.is_main` and the
reduce helpers."""
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
import os

import torch
import torch.distributed as dist

from rq.train.trainer.config import ConfigError
from rq.train.trainer.ranks import read_launch


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    local_world: int = 1   # training processes on this machine

    @property
    def is_main(self) -> bool:
        """Only this process logs, writes metrics and saves checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" picks this process's GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: torch sees no CUDA device")
    # A launcher that gives each process one GPU of its own (srun --gpus-per-task) leaves it only cuda:0.
    return torch.device("cuda", local_rank % torch.cuda.device_count()) if name == "cuda" else device


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group when launched with several processes: NCCL on GPUs, gloo on CPU.
    Rendezvous is torch's env:// at the launch's MASTER_ADDR / MASTER_PORT (torchrun's own, or those
    ranks.py derives under srun)."""
    try:
        launch = read_launch()
    except ValueError as e:
        raise ConfigError(f"cannot tell this process's rank: {e}") from None
    dev = resolve_device(device, launch.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if launch.world > 1 and not dist.is_initialized():
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = launch.master_addr, str(launch.master_port)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=launch.rank, world_size=launch.world,
                                device_id=dev if dev.type == "cuda" else None)
    return DistEnv(launch.rank, launch.world, launch.local_rank, dev, launch.local_world)


def world_change_warning(saved_world: int, env: DistEnv, batch_size: int) -> str | None:
    """A resumed run on another number of processes goes on, with other batches: say so."""
    if saved_world == env.world:
        return None
    return (f"warning: the run was saved by {saved_world} process(es) and resumes on {env.world}: the global batch "
            f"is now {batch_size * env.world} (was {batch_size * saved_world}), so the batches, the steps per "
            "epoch and the learning-rate schedule differ from an uninterrupted run's")


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def process_group(device: str = "auto") -> Iterator[DistEnv]:
    """init_distributed for the length of a command, left again however it ends."""
    env = init_distributed(device)
    try:
        yield env
    finally:
        shutdown(env)


def all_reduce_sum(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a tensor over all processes (returns a new tensor on the input's device)."""
    if not env.distributed:
        return t.clone()
    # NCCL reduces only on the GPU; gloo only on the CPU.
    out = t.detach().to(env.device if env.device.type == "cuda" else "cpu").clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(t.device)


def all_gather_objects(obj, env: DistEnv) -> list:
    """Every process's `obj` (any picklable value), in rank order."""
    if not env.distributed:
        return [obj]
    gathered = [None] * env.world
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
