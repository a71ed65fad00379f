"""`rq eval`: metrics of a trained checkpoint, the noise sweep (Table 3), the noisy-fraction Pearson
test (Table 2), eval.json and PNG plots; plus the metric and noise functions on known inputs."""
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import write_shards
from rq.train.trainer.config import TrainConfig
from rq.train.trainer.distributed import DistEnv
from rq.train.evaluation.evaluate import InputSpread, add_noise, noisy_keys
from rq.train.evaluation.metrics import accuracy, macro_f1, pearson
from rq.train.trainer.fit import fit

LEVELS = [0.0, 0.5, 1.0, 2.0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    write_shards(root / "shards", {"train": [8, 8], "test": [6, 7]}, classes=3, n_frames=3, spec_shape=(257, 20),
                 frames_per_clip=2)
    cfg = TrainConfig.from_options(str(root / "shards"), "tiny", out=str(root / "run"), epochs=1, batch_size=4,
                                   workers=0, device="cpu", method="mt")
    fit(cfg)
    return root / "shards", root / "run" / "last.pt"


def test_noise_sweep_and_pearson_write_json_and_plots(rq, trained, tmp_path):
    shards, ckpt = trained
    out = tmp_path / "eval"
    result = rq("eval", "--ckpt", ckpt, "--shards", shards, "--noise-modality", "audio", "--noise-levels",
                ",".join(map(str, LEVELS)), "--noisy-fraction", 0.5, "--workers", 0, "--device", "cpu", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["clean"]["samples"] == report["clean"]["unique_samples"] == 13
    sweep = report["noise"]
    assert sweep["modality"] == "audio" and sweep["levels"] == LEVELS
    for name in ("acc", "acc_audio", "acc_visual", "share_audio", "share_visual", "air"):
        assert len(sweep[name]) == len(LEVELS) and all(isinstance(v, float) for v in sweep[name]), name
    assert sweep["acc"][0] == report["clean"]["acc"]  # level 0 is the clean input
    assert sweep["share_audio"][0] == pytest.approx(report["clean"]["share_audio"][0])
    assert sweep["share_audio"][-1] != pytest.approx(sweep["share_audio"][0])  # the noise reaches the model
    pearson_ = report["pearson"]
    assert pearson_["samples"] == 13 and pearson_["noisy_samples"] == 7   # exactly round(0.5 x 13), halves up
    # per-sample outcomes, in key order, for the report's paired tests
    samples = json.loads((out / report["per_sample"]).read_text())
    assert samples["keys"] == sorted(_keys(shards, "test"))
    noisy = noisy_keys(_keys(shards, "test"), 0.5, 0)
    assert samples["pearson"]["noisy"] == [int(k in noisy) for k in samples["keys"]]
    assert sum(samples["clean"]["correct"]) == round(report["clean"]["acc"] * 13)
    assert [sum(c) for c in samples["noise"]["correct"]] == [round(a * 13) for a in sweep["acc"]]
    assert len(samples["clean"]["air"]) == len(samples["pearson"]["share_visual"]) == 13
    for name in ("r", "p", "r_perturbed_share", "p_perturbed_share"):
        assert isinstance(pearson_[name], float) and math.isfinite(pearson_[name]), name
    assert -1 <= pearson_["r"] <= 1 and 0 <= pearson_["p"] <= 1
    for png in ("accuracy_vs_noise.png", "attention_vs_noise.png"):
        image = cv2.imread(str(out / png))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert "audio noise sweep" in result.stdout and "Pearson" in result.stdout


def test_plain_eval_writes_next_to_the_checkpoint(rq, trained):
    shards, ckpt = trained
    result = rq("eval", "--ckpt", ckpt, "--shards", shards, "--workers", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((ckpt.parent / "eval" / "eval.json").read_text())
    assert report["noise"] is None and report["pearson"] is None and report["method"] == "mt"
    assert set(report["clean"]) >= {"acc", "acc_audio", "acc_visual", "macro_f1", "air", "share_audio", "share_visual"}


@pytest.mark.parametrize("args, message", [
    (("--noise-modality", "smell"), "--noise-modality must be audio or visual"),
    (("--noise-modality", "audio", "--noise-levels", "0,lots"), "--noise-levels must be"),
    (("--noisy-fraction", 0.5), "--noisy-fraction needs --noise-modality"),
    (("--split", "val"), "no split 'val'"),
])
def test_usage_errors_are_one_line(rq, trained, args, message):
    shards, ckpt = trained
    result = rq("eval", "--ckpt", ckpt, "--shards", shards, "--device", "cpu", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_missing_checkpoint_is_named(rq, trained, tmp_path):
    result = rq("eval", "--ckpt", tmp_path / "none.pt", "--shards", trained[0])
    assert result.exit_code == 2 and "none.pt: no such checkpoint" in result.stderr


def test_noise_is_level_times_the_split_std():
    g = torch.Generator().manual_seed(0)
    spec = torch.randn(2, 1, 257, 200, generator=g) * 3 + 5
    spec[1] = -16.1  # a silent clip's log-spectrogram is constant: it still gets noise
    batches = [{"spec": spec[i:i + 1], "frames": torch.zeros(1, 1, 3, 4, 4), "key": [str(i)]} for i in range(2)]
    spread = InputSpread(torch.device("cpu"))
    for batch in batches:
        assert spread(batch) is batch
    sigma = spread.std("audio", DistEnv(0, 1, 0, torch.device("cpu")))
    assert sigma == pytest.approx(spec.double().std(unbiased=False).item(), rel=1e-6)
    batch = {"spec": spec, "key": ["a", "b"]}
    assert torch.equal(add_noise(batch, "audio", 0.0, sigma, torch.Generator().manual_seed(1))["spec"], spec)
    noisy = add_noise(batch, "audio", 0.5, sigma, torch.Generator().manual_seed(1))["spec"]
    assert torch.allclose((noisy - spec).flatten(1).std(1), torch.tensor([0.5 * sigma] * 2), rtol=0.02)
    masked = add_noise(batch, "audio", 1.0, sigma, torch.Generator().manual_seed(1), mask=torch.tensor([True, False]))
    assert torch.equal(masked["spec"][1], spec[1]) and not torch.equal(masked["spec"][0], spec[0])


def test_noisy_choice_is_exact_seeded_and_order_free():
    keys = [f"clip{i}" for i in range(2001)]
    chosen = noisy_keys(keys, 0.5, seed=3)
    assert len(chosen) == 1001 and chosen <= set(keys)   # round(0.5 x 2001), halves up
    assert noisy_keys(keys[::-1], 0.5, seed=3) == chosen != noisy_keys(keys, 0.5, seed=4)
    # what every rank computes from the gathered keys, whatever share of them it read itself
    assert noisy_keys(keys[1::2] + keys[::2], 0.5, seed=3) == chosen
    assert [len(noisy_keys(keys[:n], 0.5, 0)) for n in (1, 2, 3, 6)] == [1, 1, 2, 3]
    assert not noisy_keys(keys, 0.0, 3) and noisy_keys(keys, 1.0, 3) == set(keys)
    assert noisy_keys(keys, 0.3, 3) <= noisy_keys(keys, 0.5, 3)   # a larger fraction adds samples


def test_absolute_noise_scale_is_level_in_the_inputs_units(rq, trained, tmp_path):
    shards, ckpt = trained
    result = rq("eval", "--ckpt", ckpt, "--shards", shards, "--noise-modality", "audio", "--noise-levels", "0,1",
                "--noise-scale", "absolute", "--workers", 0, "--device", "cpu", "--out", tmp_path / "abs")
    assert result.exit_code == 0, result.output
    sweep = json.loads((tmp_path / "abs" / "eval.json").read_text())["noise"]
    assert sweep["scale"] == "absolute" and "MultiBench" in sweep["definition"]
    # write_shards' spectrograms hold the sample ordinal: spread well over 1, which absolute noise ignores
    assert sweep["sigma"] == 1.0 and sweep["input_std"] > 1
    relative = rq("eval", "--ckpt", ckpt, "--shards", shards, "--noise-modality", "audio", "--noise-levels", "0,1",
                  "--workers", 0, "--device", "cpu", "--out", tmp_path / "rel")
    assert relative.exit_code == 0
    rel = json.loads((tmp_path / "rel" / "eval.json").read_text())["noise"]
    assert rel["scale"] == "relative" and rel["sigma"] == rel["input_std"] == pytest.approx(sweep["input_std"])
    result = rq("eval", "--ckpt", ckpt, "--shards", shards, "--noise-modality", "audio", "--noise-scale", "loud",
                "--device", "cpu")
    assert result.exit_code == 2 and "--noise-scale must be" in result.stderr


def test_metrics_on_known_predictions():
    label = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    assert accuracy(pred, label) == pytest.approx(4 / 6)
    # per class F1: class 0 P=1/2 R=1/2 -> 0.5; class 1 P=2/3 R=1 -> 0.8; class 2 P=1 R=1/2 -> 2/3
    # class 3 occurs in neither labels nor predictions: it is not averaged in
    assert macro_f1(pred, label, num_classes=4) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    x, y = np.array([0.1, 0.4, 0.35, 0.8, 0.7]), np.array([0, 0, 1, 1, 1])
    r, p = pearson(x, y)
    assert r == pytest.approx(np.corrcoef(x, y)[0, 1]) and 0 < p < 1
    assert math.isnan(pearson([1, 1, 1, 1], [0, 1, 0, 1])[0])  # constant attention: undefined, not 0


def _keys(shards: Path, split: str) -> list[str]:
    import tarfile
    manifest = json.loads((shards / "manifest.json").read_text())
    keys = []
    for shard in manifest["splits"][split]["shards"]:
        with tarfile.open(shards / shard["name"]) as tar:
            keys += sorted({m.name.split(".")[0] for m in tar.getmembers()})
    return keys
