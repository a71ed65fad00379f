"""`rq train --seeds 0,1,2`: one run per seed, in OUT/seed<N>, otherwise the same config; `rq report`
aggregates the seeds of a method (mean ± std, 95% interval, tests over seeds)."""
from dataclasses import replace
from pathlib import Path

from rq.train.trainer.config import ConfigError, TrainConfig


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]; a usage error names what is wrong."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"--seeds must list distinct seeds >= 0, got {text!r}")
    return seeds


def seed_runs(cfg: TrainConfig, seeds: str | None) -> list[TrainConfig]:
    """The runs to make: `cfg` alone, or one per seed under cfg.out (which --seeds needs)."""
    if seeds is None:
        return [cfg]
    if not cfg.out:
        raise ConfigError("--seeds needs --out DIR: the runs go to DIR/seed0, DIR/seed1, ...")
    return [replace(cfg, seed=s, out=str(Path(cfg.out) / f"seed{s}")) for s in parse_seeds(seeds)]
