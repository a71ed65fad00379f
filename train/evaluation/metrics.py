"""What a pass over the data measured: per-sample outcomes collected batch by batch, gathered across
processes (so every sample counts exactly once), then reduced to the numbers the paper reports."""
import math

import numpy as np
from scipy import stats
import torch

from rollingq.rotation import imbalance_terms
from rq.train.trainer.distributed import DistEnv, all_gather_objects

def sample_outcomes(out, labels: torch.Tensor, loss: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """One batch's per-sample outcomes, left on the device (no sync per step). `out` is a rollingq
    ModelOutput; `loss` the per-sample training loss. Attention shares and AIR are [B, fusion layers]."""
    rec = {"label": labels, "pred": out.logits.argmax(1)}
    if loss is not None:
        rec["loss"] = loss
    for m, probe in out.probes.items():
        rec[f"pred_{m}"] = probe.argmax(1)
    if out.fusion:
        for m in out.fusion[0].shares:
            rec[f"share_{m}"] = torch.stack([f.shares[m] for f in out.fusion], 1)
        # AIR of the first two modalities, in the model's order (audio vs visual)
        rec["air"] = torch.stack([imbalance_terms(f.q, *list(f.keys.values())[:2]) for f in out.fusion], 1)
    return {k: v.detach().float() for k, v in rec.items()}


class Outcomes:
    """Per-sample outcomes of one pass, appended batch by batch."""

    def __init__(self):
        self.parts: dict[str, list[torch.Tensor]] = {}
        self.keys: list[str] = []

    def add(self, rec: dict[str, torch.Tensor], keys: list[str]) -> None:
        for k, v in rec.items():
            self.parts.setdefault(k, []).append(v)
        self.keys.extend(keys)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.cat(v).cpu() for k, v in self.parts.items()}

    @classmethod
    def restored(cls, tensors: dict[str, torch.Tensor], keys: list[str], device: torch.device) -> "Outcomes":
        """The outcomes saved by `tensors()` (and their keys), on `device` to be added to again."""
        outcomes = cls()
        outcomes.parts = {k: [torch.as_tensor(v).to(device)] for k, v in tensors.items()}
        outcomes.keys = [str(k) for k in keys]
        return outcomes

    def gather(self, env: DistEnv) -> tuple[dict[str, torch.Tensor], list[str]]:
        """All processes' outcomes, concatenated in rank order (every sample once)."""
        mine = (self.tensors(), self.keys)
        everyone = all_gather_objects(mine, env)
        keys = [k for _, ks in everyone for k in ks]
        fields = set().union(*(t.keys() for t, _ in everyone))
        return {f: torch.cat([t[f] for t, _ in everyone if f in t]) for f in fields}, keys


def accuracy(pred: torch.Tensor, label: torch.Tensor) -> float:
    return float((pred == label).float().mean()) if len(label) else math.nan


def macro_f1(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> float:
    """Unweighted mean F1 over the classes that occur in the labels or the predictions."""
    cm = torch.bincount(label.long() * num_classes + pred.long(), minlength=num_classes ** 2)
    cm = cm.reshape(num_classes, num_classes).double()
    tp, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    if not present.any():
        return math.nan
    f1 = 2 * tp / (support + predicted).clamp(min=1)
    return float(f1[present].mean())


def pearson(x, y) -> tuple[float, float]:
    """Pearson r and its two-sided p-value; (nan, nan) when either side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return math.nan, math.nan
    res = stats.pearsonr(x, y)
    return float(res.statistic), float(res.pvalue)


def summarize(t: dict[str, torch.Tensor], num_classes: int, modalities: tuple[str, ...] = ("audio", "visual")) -> dict:
    """The reported numbers of one pass; acc_<m> and share_<m> for each of the dataset's modalities.
    Lists are per fusion layer. A number a model cannot have (no audio probe in unimodal-visual, no
    fusion layer in concat) is None, so every line has every field."""
    label = t.get("label", torch.zeros(0, dtype=torch.long))   # no readable sample at all: every field None

    def acc(field: str):
        return _num(accuracy(t[field], label)) if field in t else None

    def per_layer(field: str):
        return [_num(v) for v in t[field].mean(0).tolist()] if field in t and len(label) else None

    return {
        "samples": int(len(label)),
        "loss": _num(float(t["loss"].mean())) if "loss" in t and len(label) else None,
        "acc": acc("pred"),
        **{f"acc_{m}": acc(f"pred_{m}") for m in modalities},
        "macro_f1": _num(macro_f1(t["pred"], label, num_classes)) if len(label) else None,
        "air": per_layer("air"),
        **{f"share_{m}": per_layer(f"share_{m}") for m in modalities},
    }


def last_layer(values: list | None):
    """The number of the last fusion layer (the one the classifier reads) from a per-layer list."""
    return values[-1] if values else None


def _num(v: float) -> float | None:
    """JSON has no NaN: an undefined number is written as null."""
    return None if v is None or math.isnan(v) else round(float(v), 6)
