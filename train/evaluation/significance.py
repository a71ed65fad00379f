"""Is a difference between two models real? Tests suited to each comparison `rq report` and `rq demo`
state, and the words that follow from them.

One seed per model, paired over the same test samples (each model's per_sample.json of `rq eval`):
  accuracy        exact McNemar test: of the n_d samples exactly one model gets right, the b that only
                  model A gets right are Binomial(n_d, π), H0 π = ½; two-sided p = 2·min(P(X ≤ b), P(X ≥ b))
                  (capped at 1); the 95% interval of the accuracy difference is (n_d / n)·(2π − 1) over the
                  Clopper-Pearson interval of π. The interval excludes 0 exactly when p < 0.05.
  accuracy drop   paired bootstrap over samples of (clean − noisy correctness of A) − (same of B):
  under noise     a robustness claim compares how much each model loses, not the noisy levels.
  Pearson r, AIR  paired bootstrap over samples (resampled together, so both models see the same
                  resample and the same noisy set) of r_A − r_B, or of the mean AIR difference.
  Bootstrap: `resamples` draws of n samples with replacement, percentile 95% interval, two-sided
  p = 2·min(share of draws ≤ 0, share ≥ 0) (capped at 1).
Several seeds per model: the per-seed values, paired by seed when both models have the same seeds
(paired t test over seeds: t = mean(d) / (sd(d)/√k), k − 1 degrees of freedom, interval
mean ± t₀.₉₇₅·sd/√k), else Welch's unpaired t test.

Words: "A beats B" only when the 95% interval of the difference excludes 0; otherwise
"no significant difference (p = …)". Every sentence names its test and sample size."""
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Comparison:
    """A − B on one measure, with its 95% interval and p-value, and how they were computed."""
    what: str                 # e.g. "fused test accuracy"
    a: float                  # A's value (its mean over seeds when there are several)
    b: float
    diff: float               # a − b as the test estimates it
    low: float
    high: float
    p: float
    test: str                 # e.g. "exact McNemar over 48 test samples"

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Spread:
    """Mean ± std over seeds and the 95% t interval of the mean."""
    mean: float
    std: float                # sample std (n − 1); 0 for one seed
    low: float
    high: float
    n: int


def spread(values: Sequence[float]) -> Spread:
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(x):
        return Spread(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) == 1:
        return Spread(mean, 0.0, math.nan, math.nan, 1)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return Spread(mean, sd, mean - half, mean + half, len(x))


# ---- one seed: paired over samples ----

def mcnemar_accuracy(correct_a: Sequence[int], correct_b: Sequence[int], what: str = "accuracy") -> Comparison:
    """Exact McNemar test and its matching interval for accuracy(A) − accuracy(B) on the same samples."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    n = len(a)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    diff = (only_a - only_b) / n if n else math.nan
    if discordant == 0:
        p, low, high = 1.0, 0.0, 0.0
    else:
        p = min(1.0, 2 * min(stats.binom.cdf(only_a, discordant, 0.5), stats.binom.sf(only_a - 1, discordant, 0.5)))
        tail = (1 - LEVEL) / 2
        lo_pi = 0.0 if only_a == 0 else float(stats.beta.ppf(tail, only_a, discordant - only_a + 1))
        hi_pi = 1.0 if only_a == discordant else float(stats.beta.ppf(1 - tail, only_a + 1, discordant - only_a))
        low, high = discordant / n * (2 * lo_pi - 1), discordant / n * (2 * hi_pi - 1)
    return Comparison(what, float(a.mean()), float(b.mean()), diff, low, high, float(p),
                      f"exact McNemar over {n} test samples ({only_a} right only by the first, {only_b} only by "
                      "the second)")


def paired_bootstrap(statistic: Callable[[np.ndarray], np.ndarray], n: int, resamples: int = 4000,
                     seed: int = 0) -> tuple[float, float, float, float]:
    """(estimate, low, high, p) of `statistic`, which maps index arrays [draws, n] to one value per draw;
    draws whose statistic is undefined (nan, e.g. a constant resample for r) are left out."""
    rng = np.random.default_rng(seed)
    estimate = float(statistic(np.arange(n)[None, :])[0])
    draws = []
    for start in range(0, resamples, 500):   # chunks: [draws, n] index arrays stay small
        draws.append(statistic(rng.integers(0, n, (min(500, resamples - start), n))))
    values = np.concatenate(draws)
    values = values[np.isfinite(values)]
    if not len(values) or not math.isfinite(estimate):
        return estimate, math.nan, math.nan, math.nan
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    p = min(1.0, 2 * min(float((values <= 0).mean()), float((values >= 0).mean())))
    return estimate, float(low), float(high), p


def bootstrap_mean_difference(x_a: Sequence[float], x_b: Sequence[float], what: str,
                              resamples: int = 4000, seed: int = 0) -> Comparison:
    """mean(A) − mean(B) of a per-sample quantity (e.g. AIR) over the same samples."""
    a, b = np.asarray(x_a, dtype=np.float64), np.asarray(x_b, dtype=np.float64)
    d = a - b
    est, low, high, p = paired_bootstrap(lambda idx: d[idx].mean(1), len(d), resamples, seed)
    return Comparison(what, float(a.mean()), float(b.mean()), est, low, high, p,
                      f"paired bootstrap over {len(d)} test samples ({resamples} resamples)")


def drop_difference(clean_a: Sequence[int], noisy_a: Sequence[int], clean_b: Sequence[int],
                    noisy_b: Sequence[int], what: str, resamples: int = 4000, seed: int = 0) -> Comparison:
    """drop(A) − drop(B), drop = clean accuracy − accuracy under noise, paired over the same samples."""
    loss_a = np.asarray(clean_a, dtype=np.float64) - np.asarray(noisy_a, dtype=np.float64)
    loss_b = np.asarray(clean_b, dtype=np.float64) - np.asarray(noisy_b, dtype=np.float64)
    d = loss_a - loss_b
    est, low, high, p = paired_bootstrap(lambda idx: d[idx].mean(1), len(d), resamples, seed)
    return Comparison(what, float(loss_a.mean()), float(loss_b.mean()), est, low, high, p,
                      f"paired bootstrap over {len(d)} test samples ({resamples} resamples)")


def pearson_difference(share_a: Sequence[float], share_b: Sequence[float], noisy: Sequence[int], what: str,
                       resamples: int = 4000, seed: int = 0) -> Comparison:
    """r(share_A, noisy) − r(share_B, noisy) over the same samples, the same noisy ones for both."""
    a, b, y = (np.asarray(v, dtype=np.float64) for v in (share_a, share_b, noisy))

    def r(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        xs, ys = x[idx], y[idx]
        xs, ys = xs - xs.mean(1, keepdims=True), ys - ys.mean(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (xs * ys).sum(1) / np.sqrt((xs * xs).sum(1) * (ys * ys).sum(1))

    est, low, high, p = paired_bootstrap(lambda idx: r(a, idx) - r(b, idx), len(y), resamples, seed)
    whole = np.arange(len(y))[None, :]
    return Comparison(what, float(r(a, whole)[0]), float(r(b, whole)[0]), est, low, high, p,
                      f"paired bootstrap over {len(y)} test samples ({resamples} resamples)")


# ---- several seeds ----

def over_seeds(a: dict[int, float], b: dict[int, float], what: str) -> Comparison:
    """A − B from per-seed values {seed: value}: paired t over the shared seeds when both have the same
    seeds, else Welch's t. Needs at least 2 seeds on each side."""
    xa, xb = np.asarray(list(a.values()), float), np.asarray(list(b.values()), float)
    tail = 0.5 + LEVEL / 2
    if set(a) == set(b):
        d = np.asarray([a[s] - b[s] for s in sorted(a)])
        k, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
        if sd == 0:
            p, half = (1.0 if mean == 0 else 0.0), 0.0
        else:
            t = mean / (sd / math.sqrt(k))
            p, half = float(2 * stats.t.sf(abs(t), k - 1)), float(stats.t.ppf(tail, k - 1)) * sd / math.sqrt(k)
        test = f"paired t test over {k} seeds"
    else:
        mean = float(xa.mean() - xb.mean())
        va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
        se = math.sqrt(va + vb)
        if se == 0:
            p, half = (1.0 if mean == 0 else 0.0), 0.0
        else:
            df = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
            p, half = float(2 * stats.t.sf(abs(mean / se), df)), float(stats.t.ppf(tail, df)) * se
        test = f"Welch t test over {len(xa)} and {len(xb)} seeds (not the same seeds)"
    return Comparison(what, float(xa.mean()), float(xb.mean()), mean, mean - half, mean + half, p, test)


# ---- the words ----

def _fmt(v: float, points: bool) -> str:
    return f"{100 * v:.1f}" if points else f"{v:.3f}"


def _signed(v: float, points: bool) -> str:
    return f"{100 * v:+.1f}" if points else f"{v:+.3f}"


def _p(p: float) -> str:
    return "p = –" if p is None or not math.isfinite(p) else f"p = {p:.2g}" if p >= 0.001 else "p < 0.001"


def _evidence(c: Comparison, points: bool, with_p: bool = True) -> str:
    unit = " points" if points else ""
    interval = ("interval undefined" if not (math.isfinite(c.low) and math.isfinite(c.high)) else
                f"95% interval {_signed(c.low, points)} to {_signed(c.high, points)}{unit}")
    return f"difference {_signed(c.diff, points)}{unit}, {interval}" + (f", {_p(c.p)}" if with_p else "") + \
        f"; {c.test}"


def better(c: Comparison, name_a: str, name_b: str, points: bool = False) -> str:
    """For a measure where higher is better (accuracy, Pearson r)."""
    values = f"{_fmt(c.a, points)}{'%' if points else ''} vs {_fmt(c.b, points)}{'%' if points else ''}"
    if c.significant:
        winner, loser = (name_a, name_b) if c.diff > 0 else (name_b, name_a)
        return f"{winner} beats {loser} on {c.what}: {values} ({_evidence(c, points)})."
    return f"No significant difference between {name_a} and {name_b} on {c.what} ({_p(c.p)}): {values} " \
           f"({_evidence(c, points, with_p=False)})."


def robustness(c: Comparison, name_a: str, name_b: str, noise: str) -> str:
    """For accuracy drops under noise (a, b = each model's drop; smaller is more robust)."""
    drops = f"drop {_fmt(c.a, True)} vs {_fmt(c.b, True)} points"
    if c.significant:
        robust, other = (name_a, name_b) if c.diff < 0 else (name_b, name_a)
        return f"{robust} is more robust than {other} to {noise}: {drops} ({_evidence(c, True)})."
    return f"No significant difference in robustness to {noise} ({_p(c.p)}): {name_a} and {name_b} lose " \
           f"{_fmt(c.a, True)} vs {_fmt(c.b, True)} accuracy points ({_evidence(c, True, with_p=False)})."


def differs(c: Comparison, name_a: str, name_b: str) -> str:
    """For a measure with no better direction (AIR: how the fused query leans)."""
    values = f"{c.a:+.3f} vs {c.b:+.3f}"
    if c.significant:
        return f"{c.what} differs between {name_a} and {name_b}: {values} ({_evidence(c, False)})."
    return f"No significant difference in {c.what} between {name_a} and {name_b} ({_p(c.p)}): {values} " \
           f"({_evidence(c, False, with_p=False)})."
