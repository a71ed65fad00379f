"""One epoch of training, one pass of evaluation, and RollingQ's statistics pass. Each reads in the
order it runs: batch → learning rate → forward/backward → clip → step → record."""
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
import time

import torch
import torch.nn.functional as F

from rq.pipeline.console import progress
from rq.train.data import Batches, model_inputs, to_device
from rq.train.trainer.checkpoint import rng_state, set_rng_state
from rq.train.trainer.config import PRECISIONS
from rq.train.trainer.distributed import DistEnv, all_gather_objects
from rq.train.trainer.guard import StepGuard
from rq.train.evaluation.metrics import Outcomes, sample_outcomes, summarize

Batch = dict


@dataclass(frozen=True)
class ForwardPass:
    """How a forward pass runs: the model to call (DDP-wrapped and/or compiled), where, and in what precision."""
    model: torch.nn.Module
    env: DistEnv
    bf16: bool

    @classmethod
    def create(cls, model: torch.nn.Module, env: DistEnv, precision: str) -> "ForwardPass":
        """The one precision rule: "auto" is bf16 autocast on CUDA and fp32 on CPU (CPU bf16 is slower)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        return cls(model, env, precision == "bf16" or (precision == "auto" and env.device.type == "cuda"))

    def no_sync(self) -> "ForwardPass":
        """The same step without DDP's wrapper, for no-grad passes: DDP's forward broadcasts buffers (a
        collective), so a rank with fewer or no evaluation batches would leave the others waiting."""
        return ForwardPass(getattr(self.model, "module", self.model), self.env, self.bf16)

    def forward(self, batch: Batch):
        # bf16 autocast needs no loss scaling (same exponent range as fp32), unlike fp16.
        ctx = torch.autocast(self.env.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with ctx:
            return self.model(model_inputs(batch))


def per_sample_loss(out, labels: torch.Tensor) -> torch.Tensor:
    """Fused cross-entropy plus each unimodal probe's (the probes read detached encoder CLS tokens,
    so their loss trains only the probes)."""
    loss = F.cross_entropy(out.logits.float(), labels, reduction="none")
    for probe in out.probes.values():
        loss = loss + F.cross_entropy(probe.float(), labels, reduction="none")
    return loss


def train_one_epoch(step: ForwardPass, optimizer: torch.optim.Optimizer, batches: Batches, *, epoch: int,
                    steps: int, samples: int, lr_at: Callable[[int], float], grad_clip: float = 0.0,
                    observe: Callable | None = None, balancer=None, num_classes: int,
                    steps_log: list | None = None, guard: StepGuard | None = None, so_far: dict | None = None,
                    checkpoint_every: int = 0, checkpoint: Callable[[dict], None] | None = None,
                    clock: "RunClock | None" = None) -> dict:
    """Train for exactly `steps` batches (about `samples` over all processes); returns the epoch's
    metrics, reduced over all processes. `observe` (RollingQ's running statistics) sees every output;
    `balancer` (OGM-GE, PMR: balancing.py) adds to the loss and changes the gradients; `steps_log`
    gets (global step, loss on the device, lr) per step. `guard` checks each step for a non-finite
    loss or gradient (it stops the run, or the step is left out). Every `checkpoint_every` batches (not
    at the epoch's end) `checkpoint` gets this process's part of the epoch so far; `so_far`, such a
    part, continues the epoch from there. `clock` times the whole run for the bar's run ETA."""
    env = step.env
    step.model.train()
    skip = so_far["step"] if so_far else 0
    outcomes = Outcomes.restored(so_far["outcomes"], so_far["keys"], env.device) if so_far else Outcomes()
    waited, before = (so_far["waited"], so_far["elapsed"]) if so_far else (0.0, 0.0)
    if so_far and steps_log is not None:
        steps_log.extend((s, torch.tensor(loss, device=env.device), lr) for s, loss, lr in so_far["steps_log"])
    bar = _bar(env, samples, f"train {epoch}")
    if bar is not None and skip:
        bar.update(len(outcomes.keys) * env.world)
    start = ready = time.perf_counter()
    done, left_out = (so_far["done"], so_far["left_out"]) if so_far else (0, 0)
    shown, lr = 0.0, None
    for i, batch in enumerate(batches):
        if i < skip:
            # Read, not trained on: the loader's random streams stay those of the uninterrupted epoch.
            start = ready = time.perf_counter()
            continue
        if i == skip and so_far:
            # after the loader started (its start draws a seed from torch's generator), as at step `skip`
            set_rng_state(so_far["rng"])
        batch = to_device(batch, env.device)
        waited += time.perf_counter() - ready
        lr = lr_at(epoch * steps + i)
        for group in optimizer.param_groups:
            group["lr"] = lr
        out = step.forward(batch)
        loss = per_sample_loss(out, batch["label"])
        if balancer is not None:
            loss = loss + balancer.loss(out, batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        if balancer is not None:
            balancer.after_backward()
        if guard is not None and not guard.step_ok(loss, step.model, epoch, i):
            left_out += 1            # no update, and not in the epoch's metrics or RollingQ's statistics
            ready = time.perf_counter()
            continue
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(step.model.parameters(), grad_clip)
        optimizer.step()
        if observe is not None:
            observe(out)
        if steps_log is not None:
            steps_log.append((epoch * steps + i, loss.detach().mean(), lr))
        outcomes.add(sample_outcomes(out, batch["label"], loss), batch["key"])
        done += 1
        if clock is not None:
            clock.tick()
        if bar is not None:
            bar.update(len(batch["label"]) * env.world)
            if time.perf_counter() - shown > 2.0:   # the loss's host copy (a sync) every 2 s, not per step
                shown = time.perf_counter()
                eta = f", run ETA {clock.eta()}" if clock is not None else ""
                bar.set_postfix_str(f"loss {loss.detach().mean().item():.3f}, lr {lr:.2e}{eta}", refresh=False)
        if checkpoint is not None and checkpoint_every and (i + 1) % checkpoint_every == 0 and i + 1 < steps:
            checkpoint({"step": i + 1, "done": done, "left_out": left_out, "rng": rng_state(), "outcomes": outcomes.tensors(), "keys": list(outcomes.keys),
                        "waited": waited, "elapsed": before + time.perf_counter() - start,
                        "steps_log": [(s, float(v), r) for s, v, r in steps_log or []]})
        ready = time.perf_counter()
    if bar is not None:
        bar.close()
    if guard is not None:
        guard.end_epoch(epoch, done, left_out)
    elapsed = before + time.perf_counter() - start
    tensors, _ = outcomes.gather(env)
    summary = summarize(tensors, num_classes, batches.modalities)
    timing = all_gather_objects((done, waited, elapsed, batches.stats.skipped_samples, batches.stats.bad_tars), env)
    summary.update(
        lr=lr,
        steps_per_rank=[t[0] for t in timing],
        samples_per_s=round(summary["samples"] / max(t[2] for t in timing), 2),
        # share of the step time this process sat waiting for the input pipeline (mean over processes)
        data_wait_frac=round(sum(t[1] / max(t[2], 1e-9) for t in timing) / env.world, 4),
        skipped_samples=sum(t[3] for t in timing),
        bad_tars=sum(t[4] for t in timing),
        nonfinite_steps=left_out,   # the same on every process: the guard decides for all of them
    )
    return summary


class RunClock:
    """The whole run's ETA from the training steps this invocation has taken (evaluation passes
    included in their time, so it settles after the first epoch)."""

    def __init__(self, total_steps: int):
        self.total, self.done, self.started = total_steps, 0, time.perf_counter()

    def tick(self) -> None:
        self.done += 1

    def eta(self) -> str:
        if not self.done:
            return "?"
        seconds = int((time.perf_counter() - self.started) / self.done * max(0, self.total - self.done))
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@torch.no_grad()
def evaluation_pass(step: ForwardPass, batches: Batches, *, num_classes: int, samples: int | None = None,
             desc: str = "test", perturb: Callable[[Batch], Batch] | None = None
             ) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    """Metrics over every sample of `batches` (each process its own share; gathered so every sample
    counts once). `perturb` changes a batch on the device before the forward pass (noise tests).
    Returns the summary, the per-sample outcomes and their keys."""
    step = step.no_sync()
    env = step.env
    step.model.eval()
    outcomes = Outcomes()
    bar = _bar(env, samples, desc)
    for batch in batches:
        batch = to_device(batch, env.device)
        if perturb is not None:
            batch = perturb(batch)
        out = step.forward(batch)
        outcomes.add(sample_outcomes(out, batch["label"], per_sample_loss(out, batch["label"])), batch["key"])
        if bar is not None:
            bar.update(len(batch["label"]) * env.world)
    if bar is not None:
        bar.close()
    tensors, keys = outcomes.gather(env)
    summary = summarize(tensors, num_classes, batches.modalities)
    summary["unique_samples"] = len(set(keys))  # == samples when each sample was seen exactly once
    skipped = all_gather_objects((batches.stats.skipped_samples, batches.stats.bad_tars), env)
    summary.update(skipped_samples=sum(s for s, _ in skipped), bad_tars=sum(b for _, b in skipped))
    return summary, tensors, keys


@torch.no_grad()
def statistics_pass(step: ForwardPass, batches: Iterable[Batch], observe: Callable, *, samples: int, desc: str) -> None:
    """RollingQ's extra forward pass over the training stream (the paper's estimate of E[k̂_a], E[k̂_v], E[q])."""
    step = step.no_sync()
    step.model.eval()
    bar = _bar(step.env, samples, desc)
    for batch in batches:
        observe(step.forward(to_device(batch, step.env.device)))
        if bar is not None:
            bar.update(len(batch["label"]) * step.env.world)
    if bar is not None:
        bar.close()


def _bar(env: DistEnv, samples: int | None, desc: str):
    """The progress bar, on the main process only (samples/s over all processes, ETA)."""
    return progress(total=samples, desc=desc, unit="sample") if env.is_main else None
