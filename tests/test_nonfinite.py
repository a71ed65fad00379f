"""One NaN must not ruin a model silently (issue 10, point 2): NaN audio never reaches a shard, the
loader skips a non-finite sample, and a non-finite loss stops training (or skips the step) without
writing over the checkpoints. Real media made by ffmpeg, real shards, real training runs."""
import io
import os
import re

import numpy as np
import scipy.io.wavfile
import torch

from conftest import lay_out
from helpers import write_shards
from media import ffmpeg
from rq.pipeline.manifest import read_jsonl
from rq.train.data import DataConfig, eval_batches, open_source
from rq.train.trainer.checkpoint import load_checkpoint
from rq.train.data.tarstream import url_samples

TINY = ("--preset", "tiny", "--workers", "0", "--batch-size", "4", "--device", "cpu", "--epochs", "2")


def nan_audio_clip(path, tmp_path):
    """An mkv whose float audio holds 3 NaN samples at 0.3125 s (ffmpeg passes them through)."""
    wave = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    wave[5000:5003] = np.nan
    scipy.io.wavfile.write(tmp_path / "nan.wav", 16000, wave)
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=1.2", "-i", str(tmp_path / "nan.wav"), "-c:v", "libx264",
           "-c:a", "pcm_f32le", "-shortest", str(path))


def test_nan_audio_is_a_failed_clip_not_a_nan_spectrogram(rq, clip_bank, tmp_path):
    raw = lay_out(tmp_path / "raw", clip_bank, {"train/a/a0.mp4": 0, "train/b/b0.mp4": 1, "test/a/a1.mp4": 2})
    nan_audio_clip(raw / "train" / "b" / "nan.mkv", tmp_path)
    out = tmp_path / "out"
    result = rq("preprocess", "folder", "--raw", raw, "--out", out, "--audio-seconds", "1", "--frame-size", "32",
                "--workers", "1", "--max-failure-rate", "1")
    assert result.exit_code == 0, result.stderr
    assert read_jsonl(out / "failures.jsonl") == [{
        "source": "train/b/nan.mkv", "clip_id": "train/b/nan.mkv", "stage": "spectrogram",
        "reason": "the decoded audio holds 3 non-finite values (NaN or inf), the first at 0.312 s"}]
    specs = [np.load(io.BytesIO(s["spec.npy"])) for tar in out.glob("*.tar") for s in url_samples(str(tar))]
    assert len(specs) == 3 and all(np.isfinite(s).all() for s in specs)


def test_the_loader_skips_a_non_finite_sample_and_counts_it(tmp_path):
    keys = write_shards(tmp_path, {"test": [6]}, classes=2, n_frames=2, spec_shape=(257, 20))["keys"]["test"]
    write_shards(tmp_path, {"test": [6]}, classes=2, n_frames=2, spec_shape=(257, 20), nan_spec=[keys[4]])
    batches = eval_batches(open_source(str(tmp_path)), DataConfig(batch_size=4, frames=2, image_size=32, workers=0,
                                                                  pin_memory=False))
    assert sorted(k for b in batches for k in b["key"]) == sorted(keys[:4] + keys[5:])
    assert [(s.key, s.reason) for s in batches.stats.skipped] == [
        (keys[4], "ValueError: spec.npy holds 1 non-finite values (NaN or inf)")]


def diverge(run):
    """The weights a run with too high a learning rate reaches: the head so large its logits overflow.
    Written the way rq writes (a new file moved into place), so best.pt is left as it was."""
    state = load_checkpoint(run / "last.pt")
    state["model"]["head.weight"] *= 1e38
    torch.save(state, run / "diverged.pt")
    os.replace(run / "diverged.pt", run / "last.pt")


def test_a_non_finite_loss_stops_training_and_keeps_the_checkpoints(rq, tmp_path):
    shards, run = tmp_path / "shards", tmp_path / "run"
    write_shards(shards, {"train": [8], "test": [4]}, classes=2, n_frames=2, spec_shape=(257, 20))
    first = rq("train", "--shards", shards, "--out", run, "--stop-after", "1", *TINY)
    assert first.exit_code == 0, first.stderr
    diverge(run)
    before = {name: (run / name).read_bytes() for name in ("last.pt", "best.pt", "metrics.jsonl")}
    for policy, reason in ((None, r"epoch 1, step 0: (the loss is NaN or infinite|a gradient holds NaN or inf "
                                  r"values); training stopped, the checkpoints keep the last good epoch"),
                           ("skip", r"epoch 1: all 2 steps had a NaN or infinite loss or gradient; training stopped")):
        result = rq("train", "--shards", shards, "--out", run, "--resume", *TINY,
                    *(("--nonfinite", policy) if policy else ()))
        assert result.exit_code == 1 and re.search(reason, result.stderr), result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in result.stderr
        assert {name: (run / name).read_bytes() for name in before} == before   # nothing good overwritten
