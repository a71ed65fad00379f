"""What `--resume` continues with. A resumed run keeps the settings it was started with, so it ends at
the weights an uninterrupted run would have; only runtime options (where the data is, workers,
device) come from the new command line. A setting asked for that differs is never silently ignored:
`--epochs` beyond the run's extends it (the cosine schedule is stretched to the new length from the
next step on), anything else stops with one line listing the differences."""
from dataclasses import replace
from pathlib import Path

from rq.train.trainer.config import ConfigError, TrainConfig

RUNS = Path("runs")   # where runs without --out go (TrainConfig.with_run_folder)


def resumed_config(saved: TrainConfig, asked: TrainConfig, done_epochs: int) -> TrainConfig:
    """The config a resumed run goes on with: `saved` (the run's own) with `asked`'s runtime options
    and, when asked, more epochs. ConfigError names every other difference."""
    changed = saved.differences(asked)
    epochs = changed.pop("epochs", None)
    if changed:
        listed = "; ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changed.items())
        raise ConfigError(f"--resume {asked.out}: the run was started with other settings ({listed}); "
                          "resume without them, or start a new run folder")
    if epochs is not None and epochs[1] < done_epochs:
        raise ConfigError(f"--resume {asked.out}: --epochs {epochs[1]} is fewer than the {done_epochs} already done")
    return replace(saved.resumed_with(asked), epochs=epochs[1] if epochs else saved.epochs)


def latest_run(root: Path = RUNS) -> Path:
    """`--resume auto`: the run folder under `root` whose last.pt was written last."""
    found = sorted(root.glob("*/last.pt"), key=lambda p: p.stat().st_mtime_ns) if root.is_dir() else []
    if not found:
        raise ConfigError(f"--resume auto: no run folder with a last.pt under {root}/")
    return found[-1].parent
