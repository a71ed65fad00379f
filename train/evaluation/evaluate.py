"""`rq eval`: a checkpoint's metrics on a split, the noise sweep of the paper's Table 3 and the
noisy-fraction Pearson test of its Table 2; writes eval.json and PNG plots.

Noise ("Gaussian noise on the normalised input"): for the perturbed modality's input x as the model
reads it (log-spectrogram [1, F, T] as stored; frames [k, 3, H, W] after ImageNet mean/std; sequence
features [steps, D] as stored),
    x' = x + level · σ · ε,   ε ~ N(0, 1) elementwise, with
    --noise-scale relative (default): σ = the standard deviation of that modality's input over the
        whole split (all samples, all elements; of sequence features, the real steps, not the padding),
        measured during the clean pass: N(0, level²) noise on
        the input standardised to unit variance, whatever the modality's scale;
    --noise-scale absolute: σ = 1, i.e. N(0, level²) in the input's own units, as MultiBench (Liang et
        al. 2021, which the paper follows) adds it.
A silent (constant) clip still gets noise.

Pearson (Table 2): of the N samples of the split, exactly round(`--noisy-fraction` · N) (halves up),
chosen by a seeded hash of their keys (the same set on any number of processes), get the noise
above at `--noisy-level` on `--noise-modality`; r is the Pearson correlation between
    the fused CLS attention share on the OTHER modality (last fusion layer)  and  is_noisy ∈ {0, 1}.
Sign: r > 0 means attention moves away from a modality when it is noisy (what dynamic fusion
should do; the paper reports 0.44-0.52 for Vanilla MT, 0.76-0.78 with RollingQ). The correlation with
the share on the perturbed modality itself is reported too (`r_perturbed_share`, expected < 0).

Per-sample outcomes go to `per_sample.json` beside eval.json, in key order: label, correct or not and
the last fusion layer's AIR and attention shares on the clean pass, correct or not at each noise
level, and for the Pearson pass whether the sample was noisy, correct, and its shares. `rq report`
pairs two models' outcomes sample by sample for its significance tests.
"""
from dataclasses import dataclass
import hashlib
import json
import math
from pathlib import Path

import matplotlib
matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rq.pipeline.atomic import atomic_file, write_atomic, write_json  # noqa: E402
from rq.pipeline.console import err, out, summary_table, rate_limited  # noqa: E402
from rq.train.trainer.checkpoint import check_fits, read_run_checkpoint  # noqa: E402
from rq.train.trainer.config import ConfigError, TrainConfig, cli_errors  # noqa: E402
from rq.train.data import DataError, eval_batches  # noqa: E402
from rq.train.data.source import open_shards  # noqa: E402
from rq.train.data.loader import input_of, real_values, with_input  # noqa: E402
from rq.train.trainer.distributed import all_reduce_sum, process_group  # noqa: E402
from rq.train.data.integrity import verify_source  # noqa: E402
from rq.train.trainer.epoch import ForwardPass, evaluation_pass  # noqa: E402
from rq.train.evaluation.metrics import last_layer, pearson  # noqa: E402
from rq.pipeline.recipes.layout import share  # noqa: E402
from rq.train.trainer.build import build_model, data_config  # noqa: E402

PER_SAMPLE = "per_sample.json"
_DEFINITIONS = {"relative": "x + level * input_std * N(0, 1); input_std over the split's normalised input",
                "absolute": "x + level * N(0, 1) in the input's own units (MultiBench)"}


@dataclass(frozen=True)
class EvalConfig:
    ckpt: str
    shards: str
    manifest: str = ""                       # local manifest.json for URL patterns with none beside them
    split: str = "test"
    noise_modality: str = ""                 # "" = no noise tests
    noise_levels: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    noisy_fraction: float = 0.0              # 0 = no Pearson test
    noisy_level: float = 1.0
    noise_scale: str = "relative"            # relative: level x the split's std; absolute: level (MultiBench)
    out: str = ""                            # "" = <checkpoint folder>/eval
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    verify: bool = False                     # check every shard against the manifest before evaluating
    # shards of other tools (data/members.py): member names ("" = rq's) and a class list file
    frames_key: str = ""
    spec_key: str = ""
    label_key: str = ""
    classes: str = ""

    def __post_init__(self):
        if self.noise_modality not in ("", "audio", "visual", "text"):
            raise ConfigError(f"--noise-modality must be audio or visual, or text on sequence-feature shards "
                              f"(CMU-MOSEI); got {self.noise_modality!r}")
        if not 0 <= self.noisy_fraction <= 1:
            raise ConfigError(f"--noisy-fraction must be in [0, 1], got {self.noisy_fraction}")
        if self.noisy_fraction and not self.noise_modality:
            raise ConfigError("--noisy-fraction needs --noise-modality")
        if any(level < 0 for level in self.noise_levels) or self.noisy_level < 0:
            raise ConfigError("noise levels must not be negative")
        if self.noise_scale not in ("relative", "absolute"):
            raise ConfigError(f"--noise-scale must be relative or absolute, got {self.noise_scale!r}")


def parse_levels(text: str) -> tuple[float, ...]:
    """"0,0.25,0.5" -> (0.0, 0.25, 0.5), with a usage error naming the bad item."""
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"--noise-levels must be comma-separated numbers, got {text!r}") from None


def add_noise(batch: dict, modality: str, level: float, sigma: float, generator: torch.Generator,
              mask: torch.Tensor | None = None) -> dict:
    """The module docstring's noise on one modality of a batch on the device; `mask` [B] picks samples."""
    x = input_of(batch, modality)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * (level * sigma)
    if mask is not None:
        noise = noise * mask.view(-1, *[1] * (x.dim() - 1)).to(x.dtype)
    return with_input(batch, modality, x + noise)


class InputSpread:
    """Sum, sum of squares and count of each modality's input over a pass: their standard deviation.
    Used as the clean pass's `perturb` hook (it returns the batch unchanged)."""

    def __init__(self, device: torch.device, modalities: tuple[str, ...] = ("audio", "visual")):
        self.moments = {m: torch.zeros(3, dtype=torch.float64, device=device) for m in modalities}

    def __call__(self, batch: dict) -> dict:
        for m in self.moments:
            x = real_values(batch, m).double()   # sequence features: their real steps, not the padding
            self.moments[m] += torch.stack([x.sum(), (x * x).sum(), torch.tensor(x.numel(), device=x.device)])
        return batch

    def std(self, modality: str, env) -> float:
        s, sq, n = all_reduce_sum(self.moments[modality], env).tolist()
        return max(sq / n - (s / n) ** 2, 0.0) ** 0.5 if n else 0.0


def noisy_keys(keys, fraction: float, seed: int) -> frozenset[str]:
    """Exactly share(fraction, N) of the N distinct keys, the first in the order of a seeded hash of each
    key: the same set whatever the order of `keys` and however many processes read the split."""
    ranked = sorted(set(keys), key=lambda k: (hashlib.sha1(f"{seed}:{k}".encode()).digest(), k))
    return frozenset(ranked[:share(fraction, len(ranked))])


def cli_eval(noise_levels: str, noise_modality: str | None, ckpt, out, **options) -> None:
    """`rq eval`, with one-line usage errors."""
    with cli_errors():
        options.update({k: str(options.get(k) or "") for k in ("frames_key", "spec_key", "label_key", "classes")})
        evaluate_checkpoint(EvalConfig(ckpt=str(ckpt), out=str(out or ""), noise_modality=noise_modality or "",
                            noise_levels=parse_levels(noise_levels), **options))


def evaluate_checkpoint(ec: EvalConfig) -> dict:
    with process_group(ec.device) as env:
        return _eval(ec, env)


def _eval(ec: EvalConfig, env) -> dict:
    ckpt = Path(ec.ckpt)
    state = read_run_checkpoint(ckpt)
    cfg = TrainConfig.from_dict(state["config"])
    src = open_shards(ec.shards, ec)
    if ec.verify and env.is_main:
        verify_source(src, ec.shards)
    check_fits(state, ckpt, src.classes, src.spec_shape, ec.shards, src.features)
    if ec.noise_modality and ec.noise_modality not in src.modalities:
        raise ConfigError(f"--noise-modality {ec.noise_modality}: {ec.shards} has {' and '.join(src.modalities)}")
    if ec.split not in src.splits:
        raise ConfigError(f"{ec.shards}: no split {ec.split!r} (have {', '.join(src.splits)})")
    if env.is_main and src.manifest_sha256 != state["manifest_sha256"]:
        err.print(f"note: {ec.shards} are not the shards {ckpt} was trained on (manifest sha256 differs)", markup=False)

    model = build_model(cfg, len(src.classes), tuple(state["spec_shape"]), src.features)
    model.load_state_dict(state["model"])
    model.to(env.device)
    step = ForwardPass.create(model, env, cfg.precision)
    data_cfg = data_config(cfg, workers=ec.workers, shuffle_buffer=0, seed=ec.seed, pin_memory=env.device.type == "cuda")
    n = src.splits[ec.split][1]
    num_classes = len(src.classes)

    def measure(desc: str, perturb=None):
        batches = eval_batches(src, data_cfg, split=ec.split, rank=env.rank, world=env.world)
        return evaluation_pass(step, batches, num_classes=num_classes, samples=n, desc=desc, perturb=perturb)

    def generator(i: int) -> torch.Generator:
        return torch.Generator(env.device).manual_seed(ec.seed * 1_000_003 + 7919 * i + env.rank)

    spread = InputSpread(env.device, src.modalities)
    clean, t_clean, keys = measure(f"{ec.split} clean", spread)
    if not clean["samples"]:
        raise DataError(f"{ec.shards}: no readable sample in the {ec.split} split (the skipped ones are listed above)")
    sigma = 1.0 if ec.noise_scale == "absolute" else spread.std(ec.noise_modality, env) if ec.noise_modality else 0.0
    order = sorted(set(keys))
    per_sample = {"keys": order, "label": _aligned(t_clean["label"], keys, order, int),
                  "clean": _outcomes(t_clean, keys, order, src.modalities)}
    result = {"ckpt": str(ckpt), "shards": ec.shards, "split": ec.split, "method": cfg.method,
              "manifest_sha256": src.manifest_sha256, "trained_on_manifest_sha256": state["manifest_sha256"],
              "modalities": list(src.modalities), "clean": clean, "noise": None, "pearson": None, "per_sample": PER_SAMPLE,
              "tokens": _attended_tokens(model)}
    if ec.noise_modality:
        sweep = {"modality": ec.noise_modality, "levels": list(ec.noise_levels), "scale": ec.noise_scale,
                 "sigma": sigma,   # what multiplies level * N(0, 1)
                 "input_std": sigma if ec.noise_scale == "relative" else spread.std(ec.noise_modality, env),
                 "definition": _DEFINITIONS[ec.noise_scale]}
        rows, per_sample["noise"] = [], {"levels": list(ec.noise_levels), "correct": []}
        for i, level in enumerate(ec.noise_levels):
            g = generator(i)
            s, t, k = measure(f"{ec.noise_modality} noise {level:g}",
                              lambda b, g=g, level=level: add_noise(b, ec.noise_modality, level, sigma, g))
            rows.append(s)
            per_sample["noise"]["correct"].append(_outcomes(t, k, order, src.modalities)["correct"])
        for name in ("acc", *(f"acc_{m}" for m in src.modalities), "macro_f1"):
            sweep[name] = [s[name] for s in rows]
        for name in (*(f"share_{m}" for m in src.modalities), "air"):
            sweep[name] = [last_layer(s[name]) for s in rows]
        result["noise"] = sweep
    if ec.noisy_fraction:
        result["pearson"], per_sample["pearson"] = _pearson_test(
            ec, env, measure, sigma, generator(len(ec.noise_levels)), noisy_keys(order, ec.noisy_fraction, ec.seed),
            order, src.modalities)
    if env.is_main:
        _write(ec, ckpt, result, per_sample)
        rate_limited.flush()
    return result


def _attended_tokens(model) -> dict[str, int] | None:
    """Tokens the fused CLS attends to per modality (a uniform attention's shares follow these counts);
    None for a model without fusion attention."""
    if not model.fusion_layers:
        return None
    own_cls = int(getattr(model.fusion, "encoder_cls", False))
    # sequence features: their steps, padded ones included (those get no attention, so shares follow the real ones)
    return {m: (enc.steps if hasattr(enc, "steps") else math.prod(enc.grid) * max(enc.frames, 1)) + own_cls
            for m, enc in model.encoders.items()}


def _aligned(values: torch.Tensor, keys: list[str], order: list[str], kind=float) -> list:
    """`values` (one per key of a pass) in the order of `order`; None for a key that pass did not read."""
    at = {k: i for i, k in enumerate(keys)}
    return [None if k not in at else kind(round(float(values[at[k]]), 6)) for k in order]


def _outcomes(t: dict[str, torch.Tensor], keys: list[str], order: list[str],
              modalities: tuple[str, ...]) -> dict[str, list]:
    """Per sample (in `order`): correct (0/1) and, for fused models, the last fusion layer's AIR and shares."""
    outcome = {"correct": _aligned(t["pred"] == t["label"], keys, order, int)}
    for name in ("air", *(f"share_{m}" for m in modalities)):
        if name in t:
            outcome[name] = _aligned(t[name][:, -1], keys, order)
    return outcome


def _pearson_test(ec: EvalConfig, env, measure, sigma: float, g: torch.Generator, noisy: frozenset[str],
                  order: list[str], modalities: tuple[str, ...]) -> tuple[dict, dict]:
    m = ec.noise_modality
    other = next(x for x in modalities if x != m)   # the data's other modality: audio <-> visual, visual <-> text

    def perturb(b):
        mask = torch.tensor([k in noisy for k in b["key"]], device=env.device)
        return add_noise(b, m, ec.noisy_level, sigma, g, mask)

    summary, t, keys = measure(f"{m} noise on {ec.noisy_fraction:g} of samples", perturb)
    res = {"modality": m, "fraction": ec.noisy_fraction, "level": ec.noisy_level, "scale": ec.noise_scale,
           "samples": len(keys), "acc": summary["acc"], "layer": "last fusion layer",
           "convention": f"r = pearson(attention share on {other}, is_noisy); > 0 = attention leaves the noisy {m}"}
    is_noisy = [float(k in noisy) for k in keys]
    res["noisy_samples"] = int(sum(is_noisy))
    samples = {"noisy": [int(k in noisy) for k in order], **_outcomes(t, keys, order, modalities)}
    if f"share_{m}" not in t:
        res.update(r=None, p=None, r_perturbed_share=None, p_perturbed_share=None)
        return res, samples
    r, p = pearson(t[f"share_{other}"][:, -1].tolist(), is_noisy)
    r2, p2 = pearson(t[f"share_{m}"][:, -1].tolist(), is_noisy)
    numbers = dict(r=r, p=p, r_perturbed_share=r2, p_perturbed_share=p2)
    res.update({k: None if math.isnan(v) else v for k, v in numbers.items()})  # JSON has no NaN
    return res, samples


def _write(ec: EvalConfig, ckpt: Path, result: dict, per_sample: dict) -> None:
    out_dir = Path(ec.out) if ec.out else ckpt.parent / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    c, ms = result["clean"], result["modalities"]
    summary_table(f"rq eval: {ckpt} on {ec.split}", ["samples", "acc", *(f"{m} probe" for m in ms), "macro-F1",
                                                     "AIR", *(f"attn {m}" for m in ms)],
                  [[c["samples"], c["acc"], *(c[f"acc_{m}"] for m in ms), c["macro_f1"],
                    last_layer(c["air"]), *(last_layer(c[f"share_{m}"]) for m in ms)]])
    if result["noise"]:
        s = result["noise"]
        summary_table(f"{s['modality']} noise sweep", ["level", "acc", *(f"{m} probe" for m in ms),
                                                       *(f"attn {m}" for m in ms)],
                      zip(s["levels"], s["acc"], *(s[f"acc_{m}"] for m in ms), *(s[f"share_{m}"] for m in ms)))
        _plot(s, out_dir, ms)
    if result["pearson"]:
        p = result["pearson"]
        summary_table("Pearson test (Table 2)", ["noisy / samples", "r (share on other)", "p",
                                                 "r (share on noisy)", "p"],
                      [[f"{p['noisy_samples']} / {p['samples']}", p["r"], p["p"], p["r_perturbed_share"],
                        p["p_perturbed_share"]]])
    write_json(out_dir / "eval.json", result)
    write_atomic(out_dir / PER_SAMPLE, (json.dumps(per_sample, separators=(",", ":")) + "\n").encode())
    out.print(f"wrote {out_dir / 'eval.json'}" + (f" and plots in {out_dir}" if result["noise"] else ""))


def _plot(sweep: dict, out_dir: Path, modalities: list[str]) -> None:
    levels, m = sweep["levels"], sweep["modality"]
    for name, series, ylabel in (
        ("accuracy_vs_noise.png", {"fused": "acc", **{f"{x} probe": f"acc_{x}" for x in modalities}}, "accuracy"),
        ("attention_vs_noise.png", {f"on {x}": f"share_{x}" for x in modalities}, "CLS attention share"),
    ):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for label, key in series.items():
            ys = sweep[key]
            if any(y is not None for y in ys):
                ax.plot(levels, [float("nan") if y is None else y for y in ys], marker="o", label=label)
        ax.set_xlabel(f"Gaussian noise level on {m}" + (" (× split std)" if sweep.get("scale") != "absolute" else ""))
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(f"{ylabel} vs {m} noise")
        fig.tight_layout()
        with atomic_file(out_dir / name) as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)
