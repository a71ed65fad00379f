"""RollingQ against Vanilla MT as `rq report` and `rq demo` state it: each figure per run and per group
of seeds (mean ± std, 95% interval), and every comparison with the test that suits it
(train/evaluation/significance.py) and the words that follow from it.

One seed per method: paired over the same test samples (each run's per_sample.json). Several seeds
on both sides: over seeds (paired t by seed). Robustness compares the accuracy each model loses under
the strongest noise of the sweep, never the noisy levels alone."""
import math
from collections.abc import Callable, Sequence

from rq.train.evaluation import significance as sig
from rq.train.report.runs import Group, RunRecord

PAPER_R = "the paper on Kinetics-Sounds: r = 0.44 for Vanilla MT, 0.78 with RollingQ"
_OTHER = {"audio": "visual", "visual": "audio"}


def _last(values):
    return values[-1] if values else None


def noise_end(run: RunRecord) -> tuple[str | None, float | None, float | None]:
    """(modality, highest noise level, fused accuracy there) of the run's noise sweep."""
    sweep = (run.evaluation or {}).get("noise")
    if not sweep or not sweep.get("levels"):
        return None, None, None
    return sweep["modality"], sweep["levels"][-1], sweep["acc"][-1]


def figures(run: RunRecord) -> dict[str, float | None]:
    """The run's headline numbers: clean accuracies, AIR and shares (last fusion layer), accuracy and
    its drop at the highest noise level, Pearson r."""
    clean, _ = run.clean()
    _, _, noisy = noise_end(run)
    acc = clean.get("acc")
    return {"acc": acc, "acc_audio": clean.get("acc_audio"), "acc_visual": clean.get("acc_visual"),
            "air": _last(clean.get("air")), "share_audio": _last(clean.get("share_audio")),
            "share_visual": _last(clean.get("share_visual")), "acc_noisy": noisy,
            "drop": None if acc is None or noisy is None else acc - noisy,
            "r": ((run.evaluation or {}).get("pearson") or {}).get("r")}


def aggregate(group: Group) -> dict[str, sig.Spread]:
    """Each figure over the group's seeds."""
    per_run = [figures(r) for r in group.runs]
    return {name: sig.spread([f[name] for f in per_run]) for name in per_run[0]}


def _pair(groups: Sequence[Group]) -> tuple[Group | None, Group | None]:
    return (next((g for g in groups if g.method == "rollingq"), None),
            next((g for g in groups if g.method == "mt"), None))


def compare(groups: Sequence[Group]) -> list[str]:
    """Plain sentences: RollingQ (first rollingq group) against Vanilla MT (first mt group)."""
    rq, mt = _pair(groups)
    if rq is None or mt is None:
        best = max((r for g in groups for r in g.runs), key=lambda r: r.clean()[0].get("acc") or -1)
        return [f"Highest fused test accuracy: {best.name} ({_num(best.clean()[0].get('acc'))}). "
                "No Vanilla MT / RollingQ pair to compare."]
    a, b = f"RollingQ ({rq.name})", f"Vanilla MT ({mt.name})"
    if len(rq.runs) >= 2 and len(mt.runs) >= 2:
        sentences = _over_seeds(rq, mt, a, b)
    else:
        sentences = _over_samples(rq, mt, a, b)
    if any(r.on_test for r in rq.runs + mt.runs):
        sentences.append("Numbers marked 'selected on test' come from a best.pt chosen on the test split (the "
                         "released code's protocol): optimistic.")
    return sentences


def comparisons(groups: Sequence[Group]) -> list[tuple[str, sig.Comparison]]:
    """(figure, RollingQ − Vanilla MT) of every test `compare` states, for the report's CSV; [] when
    there is no pair, or one run each without per_sample.json."""
    rq, mt = _pair(groups)
    if rq is None or mt is None:
        return []
    if len(rq.runs) >= 2 and len(mt.runs) >= 2:
        return _seed_tests(rq, mt)
    return _sample_tests(*_paired_runs(rq, mt)) or []


def _over_seeds(rq: Group, mt: Group, a: str, b: str) -> list[str]:
    noise = _noise_name(rq.runs[0])
    return ([_words(name, c, a, b, noise) for name, c in _seed_tests(rq, mt)]
            + _r_sign([figures(r)["r"] for r in rq.runs + mt.runs]))


def _seed_tests(rq: Group, mt: Group) -> list[tuple[str, sig.Comparison]]:
    def values(group: Group, name: str) -> dict[int, float]:
        return {r.seed: f[name] for r in group.runs for f in [figures(r)] if f[name] is not None}

    noise = _noise_name(rq.runs[0])
    tests = []
    for name, what in _MEASURES:
        va, vb = values(rq, name), values(mt, name)
        if len(va) >= 2 and len(vb) >= 2:
            tests.append((name, sig.over_seeds(va, vb, what.format(noise=noise))))
    return tests


def _paired_runs(rq: Group, mt: Group) -> tuple[RunRecord, RunRecord]:
    """The runs of one seed to compare sample by sample: a seed both groups have, when there is one."""
    seeds = set(rq.seeds) & set(mt.seeds)
    run_a = next((r for r in rq.runs if r.seed in seeds), rq.runs[0])
    return run_a, next((r for r in mt.runs if r.seed == run_a.seed), mt.runs[0])


def _sample_tests(run_a: RunRecord, run_b: RunRecord) -> list[tuple[str, sig.Comparison]] | None:
    """The paired tests over the test samples both runs were evaluated on; None without per_sample.json."""
    if run_a.samples is None or run_b.samples is None:
        return None
    paired = _Paired(run_a.samples, run_b.samples)
    noise = _noise_name(run_a)
    modality = ((run_a.evaluation or {}).get("pearson") or {}).get("modality", "audio")
    tests = [(name, paired.test(name, what.format(noise=noise), modality)) for name, what in _MEASURES]
    return [(name, c) for name, c in tests if c is not None]


def _over_samples(rq: Group, mt: Group, a: str, b: str) -> list[str]:
    run_a, run_b = _paired_runs(rq, mt)
    tests = _sample_tests(run_a, run_b)
    if tests is None:
        fa, fb = figures(run_a), figures(run_b)
        return [f"{a} vs {b}: fused test accuracy {_num(fa['acc'])} vs {_num(fb['acc'])}; not tested "
                "(no per_sample.json: run rq eval to compare sample by sample)."]
    noise = _noise_name(run_a)
    sentences = [_words(name, c, a, b, noise) for name, c in tests]
    sentences += _r_sign([figures(r)["r"] for r in (run_a, run_b)])
    n = _Paired(run_a.samples, run_b.samples).n
    seed_note = f" of seed {run_a.seed}" if run_a.seed == run_b.seed else f" (seeds {run_a.seed} and {run_b.seed})"
    sentences.append(f"One run per method{seed_note}: tested over the {n} test samples both were "
                     f"evaluated on (one sample is {100 / max(n, 1):.1f} accuracy points); several "
                     "seeds (rq train --seeds) test over seeds.")
    return sentences


def _noise_name(run: RunRecord) -> str:
    modality, level, _ = noise_end(run)
    return f"{modality} noise {level:g}" if modality else "noise"


class _Paired:
    """Two runs' per_sample.json, on the keys both hold."""

    def __init__(self, a: dict, b: dict):
        at_b = {k: i for i, k in enumerate(b.get("keys", []))}
        self.a, self.b = a, b
        self.rows = [(i, at_b[k]) for i, k in enumerate(a.get("keys", [])) if k in at_b]
        self.n = len(self.rows)

    def _columns(self, get: Callable[[dict], list | None]) -> tuple[list, list] | None:
        """The values `get` reads from each run, on the shared keys where both have one (None: too few)."""
        ca, cb = get(self.a), get(self.b)
        if ca is None or cb is None:
            return None
        pairs = [(ca[i], cb[j]) for i, j in self.rows if ca[i] is not None and cb[j] is not None]
        return ([p[0] for p in pairs], [p[1] for p in pairs]) if len(pairs) >= 3 else None

    def test(self, name: str, what: str, modality: str) -> sig.Comparison | None:
        if name == "acc":
            clean = self._columns(lambda s: s["clean"]["correct"])
            return sig.mcnemar_accuracy(*clean, what) if clean else None
        if name == "drop":
            if (self.a.get("noise") or {}).get("levels") != (self.b.get("noise") or {}).get("levels"):
                return None
            both = self._columns(lambda s: _zip(s["clean"]["correct"], _last((s.get("noise") or {}).get("correct"))))
            if both:
                (ca, na), (cb, nb) = zip(*both[0]), zip(*both[1])
                return sig.drop_difference(ca, na, cb, nb, what)
        if name == "air":
            air = self._columns(lambda s: s["clean"].get("air"))
            return sig.bootstrap_mean_difference(*air, what) if air else None
        if name == "r":
            cols = self._columns(lambda s: _zip((s.get("pearson") or {}).get(f"share_{_OTHER[modality]}"),
                                                (s.get("pearson") or {}).get("noisy")))
            if cols and [n for _, n in cols[0]] == [n for _, n in cols[1]]:   # the same noisy samples
                return sig.pearson_difference([x for x, _ in cols[0]], [x for x, _ in cols[1]],
                                              [n for _, n in cols[0]], what)
        return None


def _zip(x: list | None, y: list | None) -> list | None:
    if x is None or y is None:
        return None
    return [None if u is None or v is None else (u, v) for u, v in zip(x, y)]


def _r_sign(values: Sequence[float | None]) -> list[str]:
    found = [v for v in values if v is not None]
    if found and all(v <= 0 for v in found):
        return [f"Neither model's attention moves away from the noisy input (every Pearson r <= 0; {PAPER_R})."]
    return [f"For reference, {PAPER_R}."] if found else []


# (figure, what it is called) of every comparison stated, in order
_MEASURES = (("acc", "fused test accuracy"), ("drop", "the accuracy drop under {noise}"),
             ("r", "Pearson r of attention vs noisy input"), ("air", "AIR on clean test samples"))


def _words(name: str, c: sig.Comparison, a: str, b: str, noise: str) -> str:
    if name == "acc":
        return sig.better(c, a, b, points=True)
    if name == "drop":
        return sig.robustness(c, a, b, noise)
    if name == "r":
        return sig.better(c, a, b)
    return sig.differs(c, a, b)


def explain_air(groups: Sequence[Group]) -> str | None:
    """Why AIR can be near 0 while most attention is on audio, with the runs' own numbers."""
    evaluated = [(g, r) for g in groups for r in g.runs[:1] if (r.evaluation or {}).get("tokens")]
    if not evaluated:
        return None
    tokens = evaluated[0][1].evaluation["tokens"]
    na, nv = tokens["audio"], tokens["visual"]
    measured = "; ".join(f"{g.name}: AIR {_signed(a['air'].mean)}, attention on audio {_num(a['share_audio'].mean)}"
                         for g in groups for a in [aggregate(g)] if math.isfinite(a["air"].mean))
    return (f"AIR vs attention share: AIR = E[cos(q, k̂_a) − cos(q, k̂_v)] compares only the DIRECTIONS of the "
            f"fused query and each modality's mean key. The attention share also depends on the keys' lengths "
            f"(a logit is q·k = |q||k|cos) and on token counts: the fused CLS attends over {na} audio and {nv} "
            f"visual tokens, so attention spread evenly would already put {na / (na + nv + 1):.2f} of it on audio. "
            f"Measured (mean over seeds): {measured}.")


def _num(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _signed(v) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:+.3f}"
