"""The files of a run folder that must agree with each other whatever moment a run is killed at, or its
disk fills: metrics.jsonl (one line per finished epoch), last.pt (the run's state) and best.pt.

- metrics.jsonl is rewritten whole (atomically) for each epoch's line; a torn last line left by an
  older rq or another writer is left out on reading, with one line saying so.
- last.pt is the commit point of an epoch. best.pt is copied from it after it is written, so a kill in
  between leaves last.pt saying "this epoch is the best" and an older best.pt: `reconcile_best`, run
  on --resume, copies it again. (A copy, not a hard link: a tool that rewrites last.pt in place must
  not change best.pt with it.)
- Weights with a NaN or an infinity are never written over a good checkpoint."""
import shutil
from pathlib import Path

import torch

from rq.pipeline.atomic import append_jsonl, atomic_path, jsonl_bytes, read_jsonl, write_atomic
from rq.pipeline.console import err
from rq.train.trainer.checkpoint import save_checkpoint
from rq.train.trainer.config import ConfigError
from rq.train.trainer.guard import NonFinite

METRICS = "metrics.jsonl"
LAST, BEST = "last.pt", "best.pt"


def read_history(run_dir: Path) -> list[dict]:
    """The metrics lines of the finished epochs; a torn tail is left out (said once, on stderr)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    try:
        rows, torn = read_jsonl(path)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if torn:
        err.print(f"warning: {path}: {torn}, left by a run that was killed while writing it; left out",
                  markup=False)
    return rows


def drop_epochs_from(run_dir: Path, epoch: int) -> list[dict]:
    """A resumed run redoes the epochs from `epoch`: keep only the lines before it. Returns them."""
    kept = [line for line in read_history(run_dir) if line.get("epoch", epoch) < epoch]
    if (Path(run_dir) / METRICS).is_file():
        write_atomic(Path(run_dir) / METRICS, jsonl_bytes(kept))
    return kept


def log_metrics(run_dir: Path, line: dict) -> None:
    append_jsonl(Path(run_dir) / METRICS, line)


def save_epoch(state: dict, run_dir: Path, is_best: bool) -> None:
    """last.pt, then best.pt from it when this epoch is the best; refused (NonFinite) when a weight is
    not finite, so the checkpoints keep the last good epoch."""
    bad = [name for name, t in state["model"].items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise NonFinite(f"epoch {state['epoch']}: the weights hold NaN or inf values ({bad[0]}, {len(bad)} tensors "
                        f"in all); not saved, {Path(run_dir) / LAST} keeps the last good epoch")
    save_checkpoint(state, Path(run_dir) / LAST)
    if is_best:
        promote_last(run_dir)


def promote_last(run_dir: Path) -> None:
    """best.pt := a copy of last.pt, atomically."""
    copy_last(run_dir, BEST)


def copy_last(run_dir: Path, name: str) -> Path:
    """`name` in the run folder := a copy of last.pt, atomically (best.pt; epoch<E>.pt of --save-every)."""
    with atomic_path(Path(run_dir) / name) as tmp:
        shutil.copyfile(Path(run_dir) / LAST, tmp)
    return Path(run_dir) / name


def reconcile_best(run_dir: Path, state: dict) -> None:
    """On --resume: when the run's state (last.pt) says its own epoch is the best but best.pt is not that
    checkpoint (the run was killed between the two writes), make best.pt from last.pt again."""
    last, best = Path(run_dir) / LAST, Path(run_dir) / BEST
    if (state.get("selection") or {}).get("best_epoch") != state.get("epoch"):
        return
    if best.is_file() and _epoch_of(best) == state["epoch"]:
        return
    err.print(f"note: {best} was not the checkpoint of the best epoch ({state['epoch']}, in {last}): remade from it",
              markup=False)
    promote_last(run_dir)


def _epoch_of(path: Path) -> int | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    except Exception:   # a torn or foreign file: not the best checkpoint
        return None
