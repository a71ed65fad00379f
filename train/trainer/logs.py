"""What a run writes for people and tools besides metrics.jsonl: per-step TensorBoard scalars, an
hparams entry per run (TensorBoard's HParams tab compares runs by setting), `summary.csv`, one row
per epoch as timm writes it (for spreadsheets and pandas), and, with --wandb PROJECT, the same
numbers to Weights & Biases (an optional package; WANDB_MODE=offline works without a network)."""
import csv
import hashlib
import io
from pathlib import Path

import torch

from rq.pipeline.atomic import write_atomic

SUMMARY = "summary.csv"
_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "test_macro_f1", "air", "rotated",
            "samples_per_s", "data_wait_frac", "epoch_s")


def write_steps(writer, records: list[tuple[int, torch.Tensor, float]]) -> None:
    """Per-step training loss and learning rate. The losses stay on the device during the epoch and
    cross to the host here, once, so logging costs the training loop no synchronisation per step."""
    for step, loss, lr in zip(*_host(records)):
        writer.add_scalar("step/loss", loss, step)
        writer.add_scalar("step/lr", lr, step)


def write_summary_csv(run_dir: Path, history: list[dict]) -> None:
    rows = io.StringIO()
    table = csv.writer(rows, lineterminator="\n")
    table.writerow(_COLUMNS)
    for line in history:
        train, test = line["train"], line.get("test") or {}
        air = (test.get("air") or [None])[-1]
        table.writerow([line["epoch"], train.get("lr"), train.get("loss"), train.get("acc"), test.get("loss"),
                        test.get("acc"), test.get("macro_f1"), air, sum(e["rotated"] for e in line["rollingq"]),
                        train.get("samples_per_s"), train.get("data_wait_frac"), line.get("epoch_s")])
    write_atomic(Path(run_dir) / SUMMARY, rows.getvalue().encode())


def write_hparams(writer, config: dict, history: list[dict]) -> None:
    """One HParams entry: the run's scalar settings against its last test accuracy and loss."""
    flat = {}
    for key, value in config.items():
        for k, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            if isinstance(v, (bool, int, float, str)):
                flat[f"{key}.{k}" if k else key] = v
    test = (history[-1].get("test") or {}) if history else {}
    metrics = {f"hparam/test_{m}": test[m] for m in ("acc", "loss") if test.get(m) is not None}
    writer.add_hparams(flat, metrics, run_name="hparams")


class WandbLog:
    """--wandb PROJECT: one W&B run per rq run, its config, every epoch's numbers and the per-step loss."""

    def __init__(self, project: str, run_dir: Path, config: dict):
        try:
            import wandb
        except ImportError:
            raise ImportError("--wandb needs the wandb package: pip install 'rq[wandb]'") from None
        self.run = wandb.init(project=project, name=Path(run_dir).name, dir=str(run_dir), config=config,
                              id=_run_id(run_dir), resume="allow")

    def epoch(self, line: dict, steps: list[tuple[int, torch.Tensor, float]]) -> None:
        for step, loss, lr in zip(*(_host(steps))):
            self.run.log({"step/loss": loss, "step/lr": lr}, step=step)
        numbers = {f"{split}/{k}": v for split in ("train", "test") for k, v in (line.get(split) or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        numbers["epoch"] = line["epoch"]
        self.run.log(numbers, step=steps[-1][0] if steps else None)

    def finish(self) -> None:
        self.run.finish()


def _host(records):
    if not records:
        return [], [], []
    losses = torch.stack([loss.detach().float() for _, loss, _ in records]).cpu().tolist()
    return [s for s, _, _ in records], losses, [lr for _, _, lr in records]


def _run_id(run_dir: Path) -> str:
    """A W&B id fixed by the run folder, so --resume continues the same W&B run."""
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
