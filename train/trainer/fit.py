"""`rq train`: build the run from a TrainConfig, train epoch by epoch, evaluate, log, checkpoint.
Importable: `fit(TrainConfig(...))` trains in-process (the tests do), under torchrun too.

The run folder:
  config.json     the resolved TrainConfig
  metrics.jsonl   one line per epoch: {"epoch", "train": {...}, "val": {...} or null, "test": {...} or null,
                  "rollingq": [...], "selection": {on, best_epoch}, "epoch_s", "load_avg"}.
                  train/val/test: samples, loss, acc, acc_audio, acc_visual, macro_f1, and per
                  fusion layer air, share_audio, share_visual (CLS attention mass on each modality's
                  tokens; null without fusion attention), skipped_samples, bad_tars; train also lr,
                  steps_per_rank, samples_per_s, data_wait_frac, nonfinite_steps (left out by --nonfinite
                  skip); test also unique_samples.
                  rollingq: one decision per fusion layer {layer, epoch, air, alpha, rotated, angle_deg,
                  rotations_done} (mt models too: measured, never rotated). load_avg: os.getloadavg()
                  at the epoch's end (1, 5, 15 min), so speed figures can be read against the machine's load.
                  balance: OGM-GE / PMR only (else null): {method, active, steps: {ratio, coeff_<m> per
                  modality: one value per training step}, mean: {...}} (trainer/balancing.py).
  tb/             the same numbers for TensorBoard
  last.pt, best.pt  checkpoints (train/trainer/checkpoint.py), best = highest VAL accuracy (selection.py:
                  --select-on test for the released code's protocol; the last epoch without a val split)
                  kept consistent with metrics.jsonl whatever moment the run is killed at (run_folder.py);
                  last.pt also every --checkpoint-every-steps K steps, epoch<E>.pt every --save-every N
                  epochs (midepoch.py)
  .rq-lock        while the run trains: its lock (a second rq train on this folder stops with one line)
"""
from contextlib import ExitStack
from dataclasses import replace
import math
import os
from pathlib import Path
import random
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from rq.pipeline.console import err, out, summary_table, rate_limited
from rq.pipeline.lock import writer_lock
from rollingq import RollingQ, load_pretrained
from rq.train.trainer.checkpoint import check_fits, optimizer_state_for, read_run_checkpoint, rng_state, set_rng_state
from rq.train.trainer.balancing import make_balancer
from rq.train.trainer.build import (build_model, build_optimizer, check_input_shape, data_config, input_warnings,
                                    lr_schedule)
from rq.train.trainer.config import ConfigError, TrainConfig, cli_errors, default_workers, provenance
from rq.train.data import eval_batches, gpu_decode, train_batches
from rq.train.data.locations import is_plain_path
from rq.train.data.source import open_shards
from rq.train.trainer.distributed import (DistEnv, all_gather_objects, all_reduce_sum, barrier, process_group,
                                          world_change_warning)
from rq.train.trainer.ranks import cores_per_process
from rq.train.evaluation.metrics import last_layer
from rq.train.trainer.logs import WandbLog, write_hparams, write_steps, write_summary_csv
from rq.train.trainer.resume import latest_run, resumed_config
from rq.train.data.integrity import verify_source
from rq.train.trainer.epoch import ForwardPass, RunClock, evaluation_pass, statistics_pass, train_one_epoch
from rq.train.trainer.guard import StepGuard
from rq.train.trainer.midepoch import continue_part, rank_part, resume_point
from rq.train.trainer.presets import resolve_preset
from rq.train.trainer.run_folder import copy_last, drop_epochs_from, log_metrics, reconcile_best, save_epoch
from rq.train.trainer.seeds import seed_runs
from rq.train.trainer.selection import Selection, effective_selection, selection_line, selection_summary


def fit(cfg: TrainConfig) -> dict:
    """Train as `cfg` says; returns {"out", "best_acc", "selection", "epochs": [metrics line per epoch]}."""
    with process_group(cfg.device) as env, ExitStack() as held:
        return _fit(cfg, env, held)


def cli_train(shards: str, preset: str | None, resume: str | None = None, seeds: str | None = None,
              **options) -> None:
    """`rq train`: the options as the CLI parsed them (None = not given: the preset's default, or with
    --resume the run's own). `resume`: "out" (the --out folder), "auto" (the latest run) or a folder.
    Without --preset, the preset that fits the shards (presets.py). With --seeds, one run per seed in
    OUT/seed<N> (the report aggregates them)."""
    with cli_errors():
        options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
        if is_plain_path(shards) and not Path(shards).exists():
            raise ConfigError(f"--shards {shards}: no such file or folder")
        if resume is None:
            preset = resolve_preset(shards, preset, options)
            for run in seed_runs(TrainConfig.from_options(shards, preset, **options), seeds):
                fit(run)
            return
        if seeds is not None:
            raise ConfigError("--seeds starts new runs; resume a seed's run with --resume OUT/seed<N>")
        if resume == "auto":
            out = latest_run()
        elif resume == "out":
            if not options.get("out"):
                raise ConfigError("--resume needs --out DIR, the run folder to continue (or --resume auto)")
            out = Path(options["out"])
        else:
            out = Path(resume)
        if not (out / "last.pt").is_file():
            raise ConfigError(f"{out / 'last.pt'}: no checkpoint to resume from")
        saved = TrainConfig.from_dict(read_run_checkpoint(out / "last.pt")["config"])
        options["out"] = str(out)
        fit(replace(TrainConfig.from_options(shards, preset, base=saved, **options), resume=True))


def _fit(cfg: TrainConfig, env: DistEnv, held: ExitStack) -> dict:
    if cfg.decode_on == "gpu" and (reason := gpu_decode.unavailable(env.device)):
        raise ConfigError(reason)
    src = open_shards(cfg.shards, cfg)
    cfg = replace(cfg, frames=cfg.frames or src.frames_per_clip)
    if cfg.verify and env.is_main:
        verify_source(src, cfg.shards)
    resumed = _load_resume(cfg, src) if cfg.resume else None
    if resumed is not None:
        if env.is_main and cfg.workers != resumed["config"]["workers"]:
            # each loader worker reads its own stretch with its own random stream
            err.print(f"warning: --workers {cfg.workers} differs from the run's {resumed['config']['workers']}: "
                      "the resumed epochs see other batches than an uninterrupted run would", markup=False)
        cfg = resumed_config(TrainConfig.from_dict(resumed["config"]), cfg, resumed["epoch"] + 1)
        if env.is_main and (note := world_change_warning(len(resumed["rng"]), env, cfg.batch_size)):
            err.print(note, markup=False)   # the checkpoint holds one random state per process
    check_input_shape(cfg, src.spec_shape, src.features)
    if env.is_main:
        for line in input_warnings(cfg, src.preprocess):
            err.print(line, markup=False)
    # Every process must write into the same folder: the main process's choice of name wins.
    cfg = replace(cfg, out=all_gather_objects(cfg.with_run_folder().out, env)[0])
    run_dir = Path(cfg.out)
    made_by = provenance()
    if env.is_main:
        held.enter_context(writer_lock(run_dir, "rq train"))   # one run per folder: a second stops here
        cfg.save(run_dir / "config.json", made_by)

    _seed_everything(cfg.seed)
    num_classes = len(src.classes)
    try:
        model = build_model(cfg, num_classes, src.spec_shape, src.features)
        if cfg.pretrained and resumed is None:
            report = load_pretrained(model, cfg.pretrained)
            if env.is_main:
                out.print("\n".join(report.lines()), markup=False)
    except ValueError as e:  # a model the options cannot build, or an unusable --pretrained file
        raise ConfigError(str(e)) from None
    model.to(env.device)
    # The controller measures AIR on any fused model (mt too) and rotates only a rollingq model.
    controller = RollingQ(model, cfg.rollingq) if model.fusion_layers else None
    balancer = make_balancer(cfg, model, env, num_classes)
    optimizer = build_optimizer(cfg, model)

    n_train = src.split("train")[1]
    global_batch = cfg.batch_size * env.world
    if n_train is None and not cfg.max_steps_per_epoch:
        raise ConfigError(f"{cfg.shards}: train sample count unknown (no manifest.json, wids index or sizes.json "
                          "beside the shards): run `rq index SHARDS...`, or give --max-steps-per-epoch")
    # Every rank runs the same number of full batches (no DDP hang); the epoch covers the train
    # split about once. The schedule's length follows from it, so no sample-count flag is needed.
    steps = max(1, (n_train or 0) // global_batch)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch) if n_train else cfg.max_steps_per_epoch
    lr_at, schedule = lr_schedule(cfg, steps)

    n_val = (src.splits["val"][1] or 0) if "val" in src.splits else 0
    selected_on, warning = effective_selection(cfg.select_on, n_val)
    if warning and env.is_main:
        err.print(warning, markup=False)
    selection = Selection(selected_on)
    start_epoch, best_acc, so_far = 0, -1.0, None
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(optimizer_state_for(resumed, model))
        if controller is not None:
            controller.load_state_dict(resumed["rollingq"])
        if balancer is not None:
            balancer.load_state_dict(resumed.get("balance") or {})
        rngs = resumed["rng"]
        set_rng_state(rngs[env.rank] if len(rngs) == env.world else rngs[0])
        start_epoch, so_far, note = resume_point(resumed, env)
        best_acc = resumed["best_acc"]
        if note and env.is_main:
            err.print(note, markup=False)
        selection = Selection.from_state(resumed.get("selection"), selected_on)
        if env.is_main:
            reconcile_best(run_dir, resumed)

    step = ForwardPass.create(_wrap(model, cfg, env), env, cfg.precision)
    data_cfg = data_config(cfg, workers=cfg.workers, shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed,
                           pin_memory=env.device.type == "cuda", decode_on=cfg.decode_on)
    n_test = (src.splits["test"][1] or 0) if "test" in src.splits else 0
    if env.is_main:
        out.print(f"rq train: {cfg.method} on {cfg.preset} preset, {n_train} train / {n_val} val / {n_test} test samples, "
                  f"{num_classes} classes, {env.world} process(es) on {env.device}, global batch {global_batch}, "
                  f"{steps} steps/epoch, warm-up {schedule['warmup_steps']} of {schedule['total_steps']} steps, "
                  f"{'bf16 autocast' if step.bf16 else 'fp32'}; run folder {run_dir}")
        cores = cores_per_process()
        if cfg.workers + 1 > cores:
            err.print(f"warning: 1 + --workers {cfg.workers} loader processes per training process, which has {cores} "
                      f"cores: they will compete for the CPU (default: {default_workers()})", markup=False)
    writer = wandb = None
    if env.is_main and cfg.wandb:
        try:
            wandb = WandbLog(cfg.wandb, run_dir, cfg.to_dict())
        except ImportError as e:
            raise ConfigError(str(e)) from None
    history = []
    if env.is_main:
        history = drop_epochs_from(run_dir, start_epoch)
        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start_epoch)
    guard = StepGuard(cfg.nonfinite, env)
    stop = min(cfg.epochs, start_epoch + cfg.stop_after) if cfg.stop_after else cfg.epochs
    clock = RunClock((stop - start_epoch) * steps - (so_far["step"] if so_far else 0))

    def checkpoint_state(epoch: int, rngs: list) -> dict:
        """last.pt's contents after `epoch` (the epoch before, for a mid-epoch one)."""
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": schedule,
                "rollingq": controller.state_dict() if controller is not None else {}, "rng": rngs,
                "balance": balancer.state_dict() if balancer is not None else {},
                "epoch": epoch, "best_acc": best_acc, "selection": selection.state_dict(),
                "config": cfg.to_dict(), "classes": list(src.classes),
                "param_names": [name for name, _ in model.named_parameters()], "provenance": made_by,
                "spec_shape": list(src.spec_shape), "manifest_sha256": src.manifest_sha256,
                # how the shards were made, so `rq predict` can treat raw videos the same way without them
                "preprocess": src.preprocess or None,
                # sequence-feature shards only (CMU-MOSEI): modality -> [steps, size] the model reads
                **({"features": {m: list(shape) for m, shape in src.features.items()}} if src.features else {})}

    def mid_epoch(epoch: int, progress: dict) -> None:
        parts = all_gather_objects(rank_part(progress, controller, balancer), env)
        if env.is_main:
            state = checkpoint_state(epoch - 1, [part["rng"] for part in parts])
            # through save_epoch: weights with a NaN or inf never replace a good last.pt
            save_epoch({**state, "mid_epoch": {"epoch": epoch, "step": progress["step"], "ranks": parts}}, run_dir,
                       is_best=False)

    for epoch in range(start_epoch, stop):
        started, steps_log = time.perf_counter(), []
        if env.is_main and (note := src.rewritten()):
            out.print(note, markup=False)
        if controller is not None:
            controller.reset()
        if balancer is not None:
            balancer.start_epoch(epoch)
        if so_far is not None:
            continue_part(so_far, controller, balancer)
        train = train_one_epoch(
            step, optimizer, train_batches(src, data_cfg, epoch=epoch, rank=env.rank, world=env.world, steps=steps),
            epoch=epoch, steps=steps, samples=steps * global_batch, lr_at=lr_at, grad_clip=cfg.grad_clip,
            observe=controller.observe if controller is not None else None, balancer=balancer,
            num_classes=num_classes, steps_log=steps_log, guard=guard, so_far=so_far,
            checkpoint_every=cfg.checkpoint_every_steps, checkpoint=lambda progress: mid_epoch(epoch, progress),  # noqa: B023
            clock=clock)
        so_far = None
        events = _rollingq_epoch_end(controller, step, src, data_cfg, epoch, steps, global_batch)
        val, test = (evaluation_pass(step, eval_batches(src, data_cfg, split=split, rank=env.rank, world=env.world),
                                     num_classes=num_classes, samples=n, desc=f"{split} {epoch}")[0] if n else None
                     for split, n in (("val", n_val), ("test", n_test)))
        is_best = selection.update(epoch, val, test)
        line = {"epoch": epoch, "train": train, "val": val, "test": test, "rollingq": events,
                "balance": balancer.end_epoch() if balancer is not None else None,
                "selection": {"on": selection.on, "best_epoch": selection.best_epoch},
                "epoch_s": round(time.perf_counter() - started, 3),
                "load_avg": [round(v, 2) for v in os.getloadavg()]}
        rngs = all_gather_objects(rng_state(), env)
        if env.is_main:
            best_acc = selection.best_value
            history.append(line)
            _log_epoch(line, run_dir, writer)
            write_steps(writer, steps_log)
            if wandb is not None:
                wandb.epoch(line, steps_log)
            write_summary_csv(run_dir, history)
            save_epoch(checkpoint_state(epoch, rngs), run_dir, is_best)
            keep = cfg.save_every and (epoch + 1) % cfg.save_every == 0
            if keep:
                copy_last(run_dir, f"epoch{epoch}.pt")
            out.print(f"saved {run_dir / 'last.pt'}" + (" and best.pt" if is_best else "")
                      + (f" (kept as epoch{epoch}.pt)" if keep else ""))
        barrier(env)
    summary = selection_summary(history, selection.on)
    if env.is_main:
        write_hparams(writer, cfg.to_dict(), history)
        writer.close()
        if wandb is not None:
            wandb.finish()
        _summary(history, summary, src.modalities)
        rate_limited.flush()
    return {"out": str(run_dir), "best_acc": best_acc, "selection": summary, "epochs": history}


def _load_resume(cfg: TrainConfig, src) -> dict:
    if not cfg.out:
        raise ConfigError("--resume needs --out DIR, the run folder to continue")
    path = Path(cfg.out) / "last.pt"
    if not path.is_file():
        raise ConfigError(f"{path}: no checkpoint to resume from")
    state = read_run_checkpoint(path)
    check_fits(state, path, src.classes, src.spec_shape, cfg.shards, src.features)
    if state["manifest_sha256"] != src.manifest_sha256:
        err.print(f"warning: {cfg.shards}: the shards changed since {path} was written "
                  f"(manifest sha256 {state['manifest_sha256'][:12]} -> {src.manifest_sha256[:12]}); "
                  "the resumed run will not match an uninterrupted one", markup=False)
    return state


def _rollingq_epoch_end(controller, step, src, data_cfg, epoch, steps, global_batch) -> list[dict]:
    """Reduce RollingQ's statistics over all processes, run the paper's extra statistics pass when
    a rotation is due (--rq-stats pass), and let it rotate. Returns one decision per fusion layer."""
    if controller is None:
        return []
    env = step.env

    def reduce():
        controller.load_stats_tensor(all_reduce_sum(controller.stats_tensor(), env))

    reduce()
    if controller.needs_stats_pass():
        controller.start_pass()
        statistics_pass(step, train_batches(src, data_cfg, epoch=epoch, rank=env.rank, world=env.world, steps=steps),
                        controller.observe, samples=steps * global_batch, desc=f"rq stats {epoch}")
        reduce()
    # JSON has no NaN (AIR before anything was observed): write null.
    return [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in e.items()}
            for e in controller.end_epoch(epoch)]


def _wrap(model: torch.nn.Module, cfg: TrainConfig, env: DistEnv) -> torch.nn.Module:
    """Compile (optional), then DDP across processes. Every method's parameters all get gradients
    (a unimodal model has no second encoder), so DDP need not search for unused ones."""
    if cfg.compile:
        model = torch.compile(model)
    if env.distributed:
        model = DistributedDataParallel(model, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    return model


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log_epoch(line: dict, run_dir: Path, writer: SummaryWriter) -> None:
    log_metrics(run_dir, line)
    epoch = line["epoch"]
    for split in ("train", "val", "test"):
        for name, value in (line[split] or {}).items():
            if isinstance(value, list) and (name == "air" or name.startswith("share_")):
                for layer, v in enumerate(value):
                    if v is not None:
                        writer.add_scalar(f"{split}/{name}/layer{layer}", v, epoch)
            elif isinstance(value, (int, float)):
                writer.add_scalar(f"{split}/{name}", value, epoch)
    for name, value in ((line.get("balance") or {}).get("mean") or {}).items():
        if value is not None:
            writer.add_scalar(f"balance/{name}", value, epoch)
    for e in line["rollingq"]:
        writer.add_scalar(f"rollingq/rotated/layer{e['layer']}", int(e["rotated"]), epoch)
        if e["air"] is not None:
            writer.add_scalar(f"rollingq/air/layer{e['layer']}", e["air"], epoch)
    writer.flush()


def _summary(history: list[dict], selection: dict, modalities: tuple[str, ...]) -> None:
    def joined(*values):
        return "/".join("-" if v is None else f"{v:.2f}" for v in values)

    rows = []
    for h in history:
        tr, te = h["train"], h["test"] or {}
        rows.append([h["epoch"], tr["loss"], joined(tr["acc"], (h.get("val") or {}).get("acc"), te.get("acc")),
                     joined(*(te.get(f"acc_{m}") for m in modalities)),
                     te.get("macro_f1"), last_layer(te.get("air")),
                     joined(*(last_layer(te.get(f"share_{m}")) for m in modalities)),
                     sum(e["rotated"] for e in h["rollingq"]), tr["samples_per_s"], tr["data_wait_frac"]])
    initials = "/".join(m[0].upper() for m in modalities)   # A/V, V/T
    summary_table("rq train (test split; AIR and attention: last fusion layer)",
                  ["epoch", "loss", "acc train/val/test", f"probe {initials}", "F1", "AIR", f"attn {initials}", "rot",
                   "samples/s", "wait"], rows)
    out.print(selection_line(selection), markup=False)
    skipped = sum(h["train"]["skipped_samples"] + (h["test"] or {}).get("skipped_samples", 0) for h in history)
    if skipped:
        out.print(f"{skipped} bad samples were skipped by the loader (named in the warnings above; "
                  "per epoch in metrics.jsonl)")
