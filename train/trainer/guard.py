"""Non-finite steps: one NaN in a loss or a gradient, applied by the optimiser, makes every weight NaN
and the run useless while it still "finishes". After each backward pass `StepGuard` checks the loss and
the gradients (the same decision on every process, so DDP ranks stay in step) and either stops the run
with one line naming the epoch and step (`--nonfinite stop`, the default; the checkpoints keep the last
good epoch) or skips that step's update and counts it (`--nonfinite skip`)."""
import torch

from rq.train.data.errors import DataError
from rq.train.trainer.distributed import DistEnv, all_reduce_sum

POLICIES = ("stop", "skip")


class NonFinite(DataError):
    """Training met a NaN or an infinity it was told not to go on with: one line, exit 1."""


class StepGuard:
    def __init__(self, policy: str, env: DistEnv):
        if policy not in POLICIES:
            raise ValueError(f"--nonfinite must be stop or skip, got {policy!r}")
        self.policy, self.env = policy, env

    def step_ok(self, loss: torch.Tensor, model: torch.nn.Module, epoch: int, step: int) -> bool:
        """After backward: True when the loss and every gradient are finite on every process. Otherwise
        NonFinite (stop), or False (skip: the caller leaves out this step's update)."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        flags = torch.stack([~torch.isfinite(loss.detach()).all(),
                             torch.stack([~torch.isfinite(g).all() for g in grads]).any() if grads
                             else torch.zeros((), dtype=torch.bool, device=loss.device)]).float()
        bad_loss, bad_grad = (all_reduce_sum(flags, self.env) > 0).tolist()
        if not (bad_loss or bad_grad):
            return True
        what = "the loss is NaN or infinite" if bad_loss else "a gradient holds NaN or inf values"
        if self.policy == "stop":
            raise NonFinite(f"epoch {epoch}, step {step}: {what}; training stopped, the checkpoints keep the "
                            "last good epoch (--nonfinite skip leaves such steps out instead)")
        return False

    def end_epoch(self, epoch: int, done: int, left_out: int) -> None:
        """An epoch whose every step was left out trained nothing: stop rather than go on."""
        if left_out and not done:
            raise NonFinite(f"epoch {epoch}: all {left_out} steps had a NaN or infinite loss or gradient; "
                            "training stopped, the checkpoints keep the last good epoch")
