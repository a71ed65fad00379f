"""`rq bench train`: training samples/s of a preset on synthetic in-memory batches (no loader), and
RollingQ's per-step overhead over Vanilla MT measured in the same run.

Both models run the real training step (train.loop.train_one_epoch: forward, loss, backward, the preset's optimiser,
RollingQ's statistics). Their timed blocks alternate, the order swapped every round, so a drift in
machine speed hits both alike; each method's step time is the median over its blocks (robust to a
burst of other load), and the overhead is the ratio of the two medians, minus 1.
"""
from dataclasses import replace
import os
from pathlib import Path
import statistics
import time

import torch

from rq.pipeline.atomic import write_json
from rq.pipeline.console import out, summary_table
from rq.train.trainer.config import ConfigError, TrainConfig, cli_errors
from rq.train.data import LoaderStats
from rq.train.trainer.distributed import DistEnv, resolve_device
from rq.train.trainer.epoch import ForwardPass, train_one_epoch
from rq.train.trainer.build import build_model, build_optimizer
from rollingq import RollingQ
from rollingq.config import PRESETS, SEQUENCE_PRESETS


class SyntheticBatches:
    """The same batch, `steps` times: a loader's batch in shape and type, at no input cost."""
    modalities = ("audio", "visual")

    def __init__(self, batch: dict, steps: int):
        self.batch, self.steps, self.stats = batch, steps, LoaderStats()

    def __iter__(self):
        return (self.batch for _ in range(self.steps))


def synthetic_batch(cfg: TrainConfig, spec_shape: tuple[int, int], num_classes: int, device: torch.device) -> dict:
    """Random inputs shaped like the loader's output (float16 spectrogram, uint8 frames)."""
    g = torch.Generator().manual_seed(cfg.seed)
    b, k, s = cfg.batch_size, cfg.frames, cfg.image_size
    batch = {"spec": torch.randn((b, 1, *spec_shape), generator=g).half(),
             "frames": torch.randint(0, 256, (b, k, 3, s, s), generator=g, dtype=torch.uint8),
             "label": torch.randint(0, num_classes, (b,), generator=g), "key": [f"synthetic{i}" for i in range(b)]}
    if device.type == "cuda":
        batch = {k: v.pin_memory() if torch.is_tensor(v) else v for k, v in batch.items()}
    return batch


def bench_train(preset: str = "tiny", method: str = "rollingq", steps: int = 20, batch_size: int | None = None,
                spec_frames: int | None = None, rounds: int = 6, device: str = "auto", precision: str = "auto",
                compile: bool = False, json_path: Path | None = None) -> dict:
    """Time `steps` training steps per method (after a warm-up block), in `rounds` alternating blocks.
    Input shapes are the preset's (tiny: 3 frames, 257 x 1004); `spec_frames` shortens the spectrogram."""
    if preset in SEQUENCE_PRESETS:
        raise ConfigError(f"rq bench train times the audio-visual presets; {preset} is not one of them")
    rounds = min(rounds, steps)
    methods = ["mt", "rollingq"] if method in ("mt", "rollingq") else [method]
    base = TrainConfig.from_options("synthetic", preset, batch_size=batch_size, device=device, precision=precision,
                                    compile=compile)
    model_preset = PRESETS[preset]
    base = replace(base, frames=model_preset.get("frames", 3))
    spec_shape = (model_preset.get("spec_bins", 257), spec_frames or model_preset.get("spec_frames", 1004))
    num_classes = 31
    dev = resolve_device(device)
    env = DistEnv(0, 1, 0, dev)
    batch = synthetic_batch(base, spec_shape, num_classes, dev)
    runners = {}
    for m in methods:
        cfg = replace(base, method=m, rollingq=replace(base.rollingq, beta=1e9))  # measure the bookkeeping, never rotate mid-benchmark
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, num_classes, spec_shape).to(dev)
        controller = RollingQ(model, cfg.rollingq) if model.fusion_layers else None
        opt = build_optimizer(cfg, model)   # the preset's optimiser (its lr is overridden per step below)
        step = ForwardPass.create(torch.compile(model) if compile else model, env, precision)
        runners[m] = (step, opt, controller, model)

    def block(m: str, n: int) -> float:
        step, opt, controller, model = runners[m]
        _sync(dev)
        t0 = time.perf_counter()
        train_one_epoch(step, opt, SyntheticBatches(batch, n), epoch=0, steps=n, samples=n * base.batch_size,
                        lr_at=lambda i: 1e-4, observe=controller.observe if controller is not None else None,
                        num_classes=num_classes)
        _sync(dev)
        return time.perf_counter() - t0

    for m in methods:
        block(m, max(2, steps // rounds))  # warm-up: allocator, autotuning, compilation
    per_step: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(rounds):
        n = steps // rounds + (i < steps % rounds)
        for m in (methods if i % 2 == 0 else methods[::-1]):
            per_step[m].append(block(m, n) / n)
    step_s = {m: statistics.median(v) for m, v in per_step.items()}

    result = {"preset": preset, "device": str(dev), "device_name": _device_name(dev),
              "precision": "bf16" if step.bf16 else "fp32",
              "batch_size": base.batch_size, "frames": base.frames, "image_size": base.image_size,
              "spec_shape": list(spec_shape), "steps": steps, "threads": torch.get_num_threads(),
              "rounds": rounds, "load_avg": [round(v, 2) for v in os.getloadavg()],
              "methods": {m: {"step_ms": round(1000 * step_s[m], 3),
                              "samples_per_s": round(base.batch_size / step_s[m], 2),
                              "parameters": sum(p.numel() for p in runners[m][3].parameters())} for m in methods}}
    if len(methods) == 2:
        result["rollingq_overhead"] = round(step_s["rollingq"] / step_s["mt"] - 1, 4)
    result["samples_per_s"] = result["methods"][method]["samples_per_s"]
    rows = [[m, r["step_ms"], r["samples_per_s"], r["parameters"]] for m, r in result["methods"].items()]
    summary_table(f"rq bench train: {preset} preset, batch {base.batch_size}, {steps} steps, {result['device_name']}, "
                  f"{result['precision']}", ["method", "ms/step", "samples/s", "parameters"], rows)
    if "rollingq_overhead" in result:
        out.print(f"RollingQ per-step overhead over Vanilla MT: {100 * result['rollingq_overhead']:+.2f}% "
                  "(target <= 2%)")
    if json_path:
        write_json(json_path, result)
    return result


def cli_bench_train(**options) -> None:
    """`rq bench train`, with one-line usage errors."""
    with cli_errors():
        bench_train(**options)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
