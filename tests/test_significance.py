"""The significance tests against scipy's own, and a constructed case for every verdict wording."""
import numpy as np
import pytest
from scipy import stats

from rq.train.evaluation.significance import (better, bootstrap_mean_difference, differs, drop_difference,
                                              mcnemar_accuracy, over_seeds, pearson_difference, robustness, spread)


def _correct(n: int, right: set[int]) -> list[int]:
    return [int(i in right) for i in range(n)]


def test_mcnemar_matches_the_exact_binomial_test_and_its_interval_agrees():
    # the demo: 48 test clips, 5 right only by RollingQ, 1 only by MT, 36 by both
    both = set(range(36))
    rq, mt = _correct(48, both | {36, 37, 38, 39, 40}), _correct(48, both | {41})
    c = mcnemar_accuracy(rq, mt, "fused test accuracy")
    assert c.p == pytest.approx(stats.binomtest(5, 6, 0.5).pvalue) and c.p == pytest.approx(0.21875)
    assert c.diff == pytest.approx(4 / 48) and c.low < 0 < c.high and not c.significant
    assert "6" in c.test or "48" in c.test
    sentence = better(c, "RollingQ", "Vanilla MT", points=True)
    assert sentence.startswith("No significant difference between RollingQ and Vanilla MT on fused test accuracy "
                               "(p = 0.22)") and "beats" not in sentence
    # 14 right only by the first, none only by the second: the interval excludes 0, p < 0.05
    strong = mcnemar_accuracy(_correct(48, both | set(range(36, 48)) | {50}), _correct(48, both), "accuracy")
    assert strong.significant and strong.p < 0.05 and strong.low > 0
    assert better(strong, "RollingQ", "Vanilla MT", points=True).startswith("RollingQ beats Vanilla MT on accuracy")
    # the other way round: the other model is named the winner
    flipped = mcnemar_accuracy(_correct(48, both), _correct(48, both | set(range(36, 48))), "accuracy")
    assert flipped.high < 0 and better(flipped, "RollingQ", "Vanilla MT", points=True).startswith(
        "Vanilla MT beats RollingQ on accuracy")
    # interval and p agree at the boundary: for every split of 20 discordant samples
    for only_a in range(21):
        c = mcnemar_accuracy([1] * only_a + [0] * (20 - only_a), [0] * only_a + [1] * (20 - only_a), "acc")
        assert c.significant == (c.p < 0.05), only_a


def test_robustness_compares_drops_not_levels():
    n = 60
    clean = _correct(n, set(range(45)))
    # both lose the same 15 samples under noise: same drop, whatever the levels
    same_a = drop_difference(clean, _correct(n, set(range(30))), clean, _correct(n, set(range(30))), "noise")
    assert same_a.diff == 0 and not same_a.significant
    assert robustness(same_a, "RollingQ", "Vanilla MT", "audio noise 1").startswith(
        "No significant difference in robustness to audio noise 1")
    # a higher noisy level that is only the clean gap repeated is not robustness
    ahead = _correct(n, set(range(55)))
    gap = drop_difference(ahead, _correct(n, set(range(40))), clean, _correct(n, set(range(30))), "noise")
    assert gap.a == gap.b == pytest.approx(0.25) and not gap.significant
    # A keeps everything, B loses 30 of 45: A is more robust
    robust = drop_difference(clean, clean, clean, _correct(n, set(range(15))), "noise")
    assert robust.a == 0 and robust.b == pytest.approx(0.5) and robust.high < 0
    assert robustness(robust, "RollingQ", "Vanilla MT", "audio noise 1").startswith(
        "RollingQ is more robust than Vanilla MT to audio noise 1: drop 0.0 vs 50.0 points")
    assert robustness(drop_difference(clean, _correct(n, set(range(15))), clean, clean, "noise"),
                      "RollingQ", "Vanilla MT", "audio noise 1").startswith("Vanilla MT is more robust than RollingQ")


def test_pearson_difference_and_air():
    rng = np.random.default_rng(0)
    noisy = np.array([1, 0] * 40)
    follows = 0.3 + 0.4 * noisy + rng.normal(0, 0.05, 80)   # attention moves to the other modality when noisy
    ignores = rng.uniform(0.2, 0.4, 80)
    c = pearson_difference(follows, ignores, noisy, "Pearson r")
    assert c.a == pytest.approx(stats.pearsonr(follows, noisy).statistic)
    assert c.b == pytest.approx(stats.pearsonr(ignores, noisy).statistic)
    assert c.significant and better(c, "RollingQ", "Vanilla MT").startswith("RollingQ beats Vanilla MT on Pearson r")
    same = pearson_difference(ignores, rng.uniform(0.2, 0.4, 80), noisy, "Pearson r")
    assert not same.significant and better(same, "RollingQ", "Vanilla MT").startswith("No significant difference")
    air = bootstrap_mean_difference(rng.normal(0.1, 0.05, 80), rng.normal(0.8, 0.05, 80), "AIR")
    assert air.high < 0 and differs(air, "RollingQ", "Vanilla MT").startswith("AIR differs between RollingQ and")
    flat = bootstrap_mean_difference(rng.normal(0.5, 0.1, 80), rng.normal(0.5, 0.1, 80), "AIR")
    assert not flat.significant and differs(flat, "RollingQ", "Vanilla MT").startswith("No significant difference in AIR")


def test_over_seeds_paired_t_and_welch():
    a, b = {0: 0.80, 1: 0.83, 2: 0.81}, {0: 0.70, 1: 0.72, 2: 0.69}
    c = over_seeds(a, b, "fused test accuracy")
    assert c.p == pytest.approx(stats.ttest_rel([0.80, 0.83, 0.81], [0.70, 0.72, 0.69]).pvalue)
    assert c.significant and c.test == "paired t test over 3 seeds"
    noisy = over_seeds({0: 0.80, 1: 0.60, 2: 0.75}, {0: 0.70, 1: 0.72, 2: 0.69}, "fused test accuracy")
    assert not noisy.significant and better(noisy, "RollingQ", "Vanilla MT", points=True).startswith(
        "No significant difference")
    welch = over_seeds({0: 0.80, 1: 0.83, 2: 0.81}, {5: 0.70, 6: 0.72}, "acc")
    assert welch.p == pytest.approx(stats.ttest_ind([0.80, 0.83, 0.81], [0.70, 0.72], equal_var=False).pvalue)
    assert "Welch" in welch.test
    s = spread([0.80, 0.83, 0.81])
    low, high = stats.t.interval(0.95, 2, loc=np.mean([0.80, 0.83, 0.81]), scale=stats.sem([0.80, 0.83, 0.81]))
    assert (s.mean, s.low, s.high) == pytest.approx((np.mean([0.8, 0.83, 0.81]), low, high))
    assert s.std == pytest.approx(np.std([0.80, 0.83, 0.81], ddof=1)) and s.n == 3
