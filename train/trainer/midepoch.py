"""Checkpoints beyond one per epoch: `--checkpoint-every-steps K` (last.pt inside an epoch, so a killed
run resumes mid-epoch and still ends at the weights of an uninterrupted run) and `--save-every N`
(epoch<E>.pt kept every N epochs: run_folder.copy_last).

A mid-epoch last.pt is an epoch-end checkpoint of the epoch before (its "epoch") plus "mid_epoch":
{"epoch", "step", "ranks": one part per process}. A part is what that process has done of the epoch:
the batches it trained on, its random state after them, its outcomes and step log so far, RollingQ's
statistics and the balancer's epoch state. On resume each process reads its epoch's first `step`
batches again without training on them (the loader's random streams depend on the batches before,
so skipping them otherwise would change every later batch), restores its part and goes on."""
from rq.train.trainer.distributed import DistEnv


def resume_point(resumed: dict, env: DistEnv) -> tuple[int, dict | None, str | None]:
    """From a checkpoint being resumed: (the first epoch to train, this process's part of it or None,
    a warning or None)."""
    mid = resumed.get("mid_epoch")
    if not mid:
        return resumed["epoch"] + 1, None, None
    if len(mid["ranks"]) != env.world:
        return mid["epoch"], None, (f"warning: last.pt was written at step {mid['step']} of epoch {mid['epoch']} "
                                    f"by {len(mid['ranks'])} process(es); on {env.world} the batches differ, so "
                                    f"epoch {mid['epoch']} is trained again from its start")
    return mid["epoch"], mid["ranks"][env.rank], None


def rank_part(progress: dict, controller, balancer) -> dict:
    """This process's part of a mid-epoch checkpoint: the epoch's progress (train_one_epoch's) and the
    controller's and balancer's state gathered in the epoch so far."""
    return {**progress, "controller": controller.state_dict() if controller is not None else {},
            "balance": balancer.epoch_state() if balancer is not None else {}}


def continue_part(part: dict, controller, balancer) -> None:
    """At the start of the resumed epoch (after the controller's reset and the balancer's start_epoch)."""
    if controller is not None:
        controller.load_state_dict(part["controller"])
    if balancer is not None:
        balancer.load_epoch_state(part["balance"])
