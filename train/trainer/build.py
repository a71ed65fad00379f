"""What a TrainConfig builds: the model for given shards, the optimiser and the learning-rate schedule.
Training, evaluation, prediction and the benchmarks all build through here."""
import math

import torch

from rollingq import MultimodalTransformer, create_model, preset_config
from rq.train.trainer.config import TrainConfig


def build_model(cfg: TrainConfig, num_classes: int, spec_shape: tuple[int, int]) -> MultimodalTransformer:
    """The model a config describes, for shards of `num_classes` classes and [F, T] spectrograms."""
    overrides = dict(frames=cfg.frames, image_size=cfg.image_size, spec_bins=spec_shape[0],
                     spec_frames=spec_shape[1], fusion_layers=cfg.fusion_layers)
    return create_model(preset_config(cfg.preset, num_classes, cfg.method, **overrides))


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW, at the config's peak learning rate."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_schedule(cfg: TrainConfig, steps_per_epoch: int):
    """Per-step learning rate: linear warm-up for `warmup_epochs`, then cosine annealing to 0."""
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return lr_at, {"kind": "warmup-cosine", "warmup_steps": warmup, "total_steps": total,
                   "steps_per_epoch": steps_per_epoch}
