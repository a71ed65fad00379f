"""What a TrainConfig builds: the model for given shards, the loader settings, the optimiser and the
learning-rate schedule. Training, evaluation, prediction, `rq model` and the benchmarks all build
through here."""
import math

import torch

from rollingq import MultimodalTransformer, create_model, preset_config
from rollingq.config import SEQUENCE_PRESETS, ModelConfig, PRESETS, preset_input_shape
from rq.train.data import DataConfig
from rq.train.trainer.config import ConfigError, TrainConfig

# Which `rq preprocess` settings give each preset's spectrogram (for the message when they do not fit).
_MADE_BY = {"ks": "--audio-features stft with 10 s at 16 kHz", "cremad": "--audio-features stft with --audio-seconds 3",
            "ks-official": "--audio-features ks-fbank", "cremad-official": "--audio-features cremad-official"}


def model_config(cfg: TrainConfig, num_classes: int, spec_shape: tuple[int, int],
                 features: dict[str, tuple[int, int]] | None = None) -> ModelConfig:
    """The ModelConfig of a run for shards of `num_classes` classes and stored spectrograms `spec_shape`,
    or of sequence `features` (modality -> (steps, size)). ValueError when the preset does not fit."""
    misfit = preset_misfit(cfg.preset, features)
    if misfit:
        raise ValueError(misfit)
    # what the method is built with, on any data
    overrides = dict(fusion_layers=cfg.fusion_layers, fusion_block=cfg.fusion_block, rolling=cfg.rolling,
                     bottleneck_tokens=cfg.bottleneck_tokens, bottleneck_layers=cfg.bottleneck_layers,
                     cross_layers=cfg.cross_layers)
    if features:
        return preset_config(cfg.preset, num_classes, cfg.method, **overrides,
                             features=tuple((m, d) for m, (_, d) in features.items()),
                             steps=next(iter(features.values()))[0])
    overrides |= dict(image_size=cfg.image_size, spec_bins=spec_shape[0], spec_frames=spec_shape[1])
    if cfg.frames:   # 0 = the preset's (a training run always sets it, from the manifest if not given)
        overrides["frames"] = cfg.frames
    return preset_config(cfg.preset, num_classes, cfg.method, **overrides)


def build_model(cfg: TrainConfig, num_classes: int, spec_shape: tuple[int, int],
                features: dict[str, tuple[int, int]] | None = None) -> MultimodalTransformer:
    """The model a config describes, for shards of `num_classes` classes and [F, T] spectrograms (or
    sequence `features`)."""
    return create_model(model_config(cfg, num_classes, spec_shape, features))


def preset_spec_shape(preset: str) -> tuple[int, int]:
    """The stored spectrogram shape a preset is made for (tiny: the model's default, 257 x 1004)."""
    return preset_input_shape(preset) or (ModelConfig.spec_bins, ModelConfig.spec_frames)


def preset_misfit(preset: str, features: dict | None) -> str | None:
    """Why a preset cannot read shards of sequence `features` (or of frames and spectrograms), or None."""
    if bool(features) == (preset in SEQUENCE_PRESETS):
        return None
    kind = f"sequence features ({', '.join(features)})" if features else "frames and spectrograms"
    fits = " or ".join(SEQUENCE_PRESETS) if features else "ks, cremad or tiny"
    return f"--preset {preset} does not fit these shards of {kind}: use --preset {fits}"


def check_input_shape(cfg: TrainConfig, spec_shape: tuple[int, int], features: dict | None = None) -> None:
    """A preset made for one input shape refuses shards of another, in one line naming both."""
    misfit = preset_misfit(cfg.preset, features)
    if misfit:
        raise ConfigError(misfit)
    want = preset_input_shape(cfg.preset)
    if want is not None and tuple(spec_shape) != want:
        raise ConfigError(f"{cfg.shards}: spectrograms are {spec_shape[0]}x{spec_shape[1]}, the {cfg.preset} preset "
                          f"is made for {want[0]}x{want[1]} (rq preprocess {_MADE_BY[cfg.preset]}); "
                          "--preset tiny takes any shape")


def input_warnings(cfg: TrainConfig, preprocess: dict) -> list[str]:
    """What the preset expects of the shards that they do not have but can still be trained on: the
    released Kinetics-Sounds frames are taken at t = i + 0.5 s."""
    times = (preprocess.get("frames") or {}).get("times", "start")
    if cfg.preset == "ks-official" and times != "middle":
        return [f"warning: {cfg.shards}: frames at t = 0, 1, 2 ... s; the released code's are at t = i + 0.5 s "
                "(rq preprocess --frame-times middle)"]
    return []


def data_config(cfg: TrainConfig, **runtime) -> DataConfig:
    """The loader settings of a run; `runtime` adds workers, seed, pin_memory, shuffle_buffer."""
    return DataConfig(batch_size=cfg.batch_size, frames=cfg.frames or PRESETS[cfg.preset].get("frames", 3),
                      image_size=cfg.image_size, frame_crop=cfg.frame_crop, frame_pick=cfg.frame_pick,
                      random_eval_frames=cfg.random_test_frames, **runtime)


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
