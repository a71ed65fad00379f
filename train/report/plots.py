"""The report's figures: one PNG per question, every run in its own colour, named in the legend, so
each picture reads without the text around it. Matplotlib on the Agg backend (files only)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

if TYPE_CHECKING:
    from rq.train.report.runs import RunRecord

from rq.pipeline.atomic import atomic_file  # noqa: E402
from rq.train.evaluation.metrics import last_layer  # noqa: E402

_NAN = float("nan")


def _value(v) -> float:
    return _NAN if v is None else float(v)


def _figure(path: Path, title: str, draw: Callable, *, panels: int = 1, width: float = 6.0) -> Path:
    """One figure of `panels` side-by-side axes drawn by `draw(axes)`, titled, saved, closed."""
    fig, axes = plt.subplots(1, panels, figsize=(width * panels, 3.8), squeeze=False)
    draw(list(axes[0]))
    fig.suptitle(title)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        if ax.get_xlabel() == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return path


def _colour(i: int) -> str:
    return f"C{i % 10}"


def _epochs(run: RunRecord) -> list[int]:
    return [line["epoch"] for line in run.epochs]


def _test(run: RunRecord, name: str, per_layer: bool = False) -> list[float]:
    """A test-split metric per epoch (the last fusion layer's value for per-layer metrics)."""
    values = [(line.get("test") or {}).get(name) for line in run.epochs]
    return [_value(last_layer(v) if per_layer else v) for v in values]


def accuracy_per_epoch(runs: Sequence[RunRecord], path: Path) -> Path:
    def draw(axes):
        ax = axes[0]
        for i, run in enumerate(runs):
            x = _epochs(run)
            ax.plot(x, _test(run, "acc"), "-o", color=_colour(i), label=f"{run.name}: fused")
            ax.plot(x, _test(run, "acc_audio"), "--", color=_colour(i), alpha=0.7, label=f"{run.name}: audio probe")
            ax.plot(x, _test(run, "acc_visual"), ":", color=_colour(i), alpha=0.7, label=f"{run.name}: visual probe")
        ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1))
    return _figure(path, "Test accuracy per epoch", draw)


def air_per_epoch(runs: Sequence[RunRecord], path: Path) -> Path:
    """AIR measured on the training epoch (what the RollingQ rule reads), each rotation a star at the
    epoch whose end it happened, and the ±beta band inside which no rotation is due."""
    def draw(axes):
        ax = axes[0]
        ax.axhline(0, color="grey", lw=0.8)
        for i, run in enumerate(runs):
            x = _epochs(run)
            air = [_value(last_layer((line.get("train") or {}).get("air"))) for line in run.epochs]
            ax.plot(x, air, "-o", color=_colour(i), label=f"{run.name} (train)")
            ax.plot(x, _test(run, "air", per_layer=True), "--", color=_colour(i), alpha=0.6,
                    label=f"{run.name} (test, after the epoch's rotation)")
            for epoch, y in run.rotations():
                ax.axvline(epoch, color=_colour(i), ls=":", alpha=0.6)
                ax.plot([epoch], [y], "*", ms=16, color=_colour(i), markeredgecolor="black",
                        label=f"{run.name}: rotation")
            beta = run.settings.rollingq.beta
            if run.method == "rollingq" and beta:
                ax.axhspan(-beta, beta, color=_colour(i), alpha=0.08, label=f"{run.name}: |AIR| ≤ beta = {beta:g}")
        ax.set(xlabel="epoch", ylabel="AIR (> 0: audio favoured)")
    return _figure(path, "Attention imbalance rate per epoch (last fusion layer)", draw, width=7.5)


def attention_per_epoch(runs: Sequence[RunRecord], path: Path) -> Path:
    def draw(axes):
        ax = axes[0]
        for i, run in enumerate(runs):
            x = _epochs(run)
            ax.plot(x, _test(run, "share_audio", per_layer=True), "-o", color=_colour(i), label=f"{run.name}: on audio")
            ax.plot(x, _test(run, "share_visual", per_layer=True), "--s", color=_colour(i),
                    label=f"{run.name}: on visual")
        ax.set(xlabel="epoch", ylabel="fused CLS attention share (test)", ylim=(0, 1))
    return _figure(path, "Where the fused CLS token looks, per epoch", draw)


def noise_sweep(runs: Sequence[RunRecord], path: Path) -> Path | None:
    """Accuracy and attention share on audio vs the noise level of each run's eval.json."""
    swept = [(i, run, run.evaluation["noise"]) for i, run in enumerate(runs)
             if run.evaluation and run.evaluation.get("noise")]
    if not swept:
        return None
    modality = swept[0][2]["modality"]

    def draw(axes):
        for i, run, sweep in swept:
            levels = sweep["levels"]
            axes[0].plot(levels, [_value(v) for v in sweep["acc"]], "-o", color=_colour(i), label=run.name)
            axes[1].plot(levels, [_value(v) for v in sweep[f"share_{modality}"]], "-o", color=_colour(i),
                         label=f"{run.name}: on {modality}")
        axes[0].set(xlabel=f"Gaussian noise level on {modality}", ylabel="fused test accuracy",
                    ylim=(0, 1), title="accuracy")
        axes[1].set(xlabel=f"Gaussian noise level on {modality}",
                    ylabel=f"CLS attention share on {modality}", ylim=(0, 1), title="attention")
    return _figure(path, f"Robustness to {modality} noise (paper Table 3 protocol)", draw, panels=2, width=5.5)


def pearson(runs: Sequence[RunRecord], path: Path) -> Path | None:
    """One bar per run: Pearson r between the attention share on the clean modality and 'this
    sample is noisy'; higher = attention moves away from a corrupted input."""
    tested = [(i, run, run.evaluation["pearson"]) for i, run in enumerate(runs)
              if run.evaluation and run.evaluation.get("pearson")]
    if not tested:
        return None
    m = tested[0][2]["modality"]

    def draw(axes):
        ax = axes[0]
        for slot, (i, run, p) in enumerate(tested):
            r = _value(p.get("r"))
            ax.bar(slot, 0 if r != r else r, color=_colour(i), label=run.name)
            ax.annotate("r undefined" if r != r else f"r = {r:.2f}\np = {_value(p.get('p')):.2g}",
                        (slot, max(0.0, 0 if r != r else r)), ha="center", va="bottom", fontsize="small")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(tested)), [run.name for _, run, _ in tested])
        ax.set(ylabel="Pearson r", ylim=(min(-0.1, ax.get_ylim()[0]), max(1.0, ax.get_ylim()[1])))
    share = "visual" if m == "audio" else "audio"
    return _figure(path, f"Attention on {share} vs 'sample has {m} noise' ({tested[0][2]['fraction']:g} noisy)",
                   draw)


def speed_per_epoch(runs: Sequence[RunRecord], path: Path) -> Path:
    def draw(axes):
        ax = axes[0]
        for i, run in enumerate(runs):
            loads = [line["load_avg"][0] for line in run.epochs if line.get("load_avg")]
            load = f" (load {sum(loads) / len(loads):.1f})" if loads else ""
            ax.plot(_epochs(run), [_value((line.get("train") or {}).get("samples_per_s")) for line in run.epochs],
                    "-o", color=_colour(i), label=run.name + load)
        ax.set(xlabel="epoch", ylabel="training samples / s")
        ax.set_ylim(bottom=0)
    return _figure(path, "Training speed per epoch, under each run's machine load (not a method comparison)", draw)
