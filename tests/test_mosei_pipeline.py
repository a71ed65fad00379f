"""`rq preprocess mosei` on computational sequences and pickles written here: word alignment with known
means, cut and pad with masks, both binarisations, splits by video id, the refusing unpickler, bad
segments and bad files, byte-identical reruns that recompute only the changed stage."""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import snapshot
from mosei_data import label_rows, multibench_split, read_samples, write_pickle, write_raw
from rq.pipeline.manifest import read_jsonl, read_manifest
from rq.pipeline.synth.mosei import MoseiSynthSettings, write as synth_write


def preprocess(rq, raw: Path, out: Path, *extra: object, code: int = 0):
    result = rq("preprocess", "mosei", "--raw", raw, "--out", out, "--workers", 1, "--max-failure-rate", 1, *extra)
    assert result.exit_code == code, result.stdout + result.stderr
    return result


def word_vectors(n: int, first: int = 0) -> np.ndarray:
    """n distinct 300-d word vectors: word w is all (first + w + 1) / 10."""
    return np.repeat((np.arange(first, first + n, dtype=np.float32)[:, None] + 1) / 10, 300, axis=1)


def facet_rows(starts: list[float], length: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows [t, t + length) whose features are row i + column j / 100."""
    features = np.arange(len(starts), dtype=np.float32)[:, None] + np.arange(35, dtype=np.float32)[None] / 100
    return features, np.array([[t, t + length] for t in starts])


@pytest.fixture
def crafted(tmp_path) -> Path:
    """Videos whose rows are known, and one bad case of each kind."""
    nan_facet = facet_rows([0, 1], 1)[0]
    nan_facet[1, 4] = np.nan
    covarep = np.ones((2, 74), np.float32)
    covarep[1] = 3
    covarep[0, 0] = -np.inf
    return write_raw(tmp_path / "raw", {
        "labels": {"vidA": label_rows((0, 3, -1), (10, 12, 0.0)), "vidB": label_rows((0, 1, 0.5)),
                   "vidC": label_rows((5, 6, 1.0)), "vidD": label_rows((0, 2, 2.0)), "vidE": label_rows((0, 1, -2.0))},
        "words": {"vidA": (word_vectors(5), [[0.2, 0.8], [1.0, 2.0], [2.5, 2.5], [2.9, 3.4], [10.2, 10.8]]),
                  "vidB": (word_vectors(1), [[0.2, 0.4]]), "vidC": (word_vectors(1), [[0.0, 1.0]]),
                  "vidD": (word_vectors(2), [[0.1, 0.5], [0.6, 1.9]]), "vidE": (word_vectors(1, 7), [[0.3, 0.6]])},
        "facet": {"vidA": facet_rows([0.5 * i for i in range(8)], 0.5), "vidC": facet_rows([0], 6),
                  "vidD": (nan_facet, [[0, 1], [1, 2]]), "vidE": facet_rows([0, 0.5], 0.5)},
        "covarep": {v: (covarep, [[0, 2], [2, 4]]) for v in ("vidA", "vidD", "vidE")}
                   | {"vidC": (covarep, [[0, 2], [2, 6]])},
    })


def test_features_are_the_means_over_each_word_and_padding_is_masked(rq, crafted, tmp_path):
    out = tmp_path / "out"
    preprocess(rq, crafted, out, "--steps", 5)
    samples = read_samples(out)
    assert set(samples) == {"vidA[0]", "vidE[0]"}
    a = samples["vidA[0]"]
    # FACET rows are 0.5 s long with value = row index: word [0.2, 0.8] covers rows 0-1, [1.0, 2.0] rows 2-3
    # (rows touching only its edges do not count), the instant 2.5 row 5, and [2.9, 3.4] cut to the
    # segment's end at 3.0 only row 5.
    assert np.allclose(a["visual.npy"][:, 0], [0.5, 2.5, 5, 5, 0]) and np.allclose(a["visual.npy"][1, 7], 2.57)
    assert a["visual_mask.npy"].tolist() == [True] * 4 + [False]
    assert np.allclose(a["text.npy"][:, 0], [0.1, 0.2, 0.3, 0.4, 0]) and a["text_mask.npy"].sum() == 4
    # COVAREP rows [0, 2) and [2, 4): the -inf of row 0 counts as 0
    assert np.allclose(a["covarep.npy"][:4, :2], [[0, 1], [0, 1], [3, 3], [3, 3]])
    assert a["visual.npy"].dtype == np.float32 and a["visual_mask.npy"].dtype == bool
    assert a["meta"] | {"emotions": None} == {
        "clip_id": "vidA[0]", "video_id": "vidA", "label": 0, "label_name": "negative", "split": a["meta"]["split"],
        "sentiment": -1.0, "binarize": "ge0", "source": "vidA[0]", "steps": 5, "start": 0.0, "end": 3.0,
        "emotions": None}
    assert samples["vidE[0]"]["text_mask.npy"].tolist() == [True, False, False, False, False]
    failures = {f["clip_id"]: (f["stage"], f["reason"]) for f in read_jsonl(out / "failures.jsonl")}
    assert failures == {
        "vidA[1]": ("facet", "the segment 10-12 s lies outside the FACET data of video vidA (0-4 s): some words "
                             "have no feature row"),
        "vidB[0]": ("facet", "video vidB is missing from CMU_MOSEI_VisualFacet42.csd"),
        "vidC[0]": ("words", "no words inside the segment 5-6 s of video vidC"),
        "vidD[0]": ("facet", "1 non-finite FACET values")}
    statuses = {c["clip_id"]: c["status"] for c in read_jsonl(out / "clips.jsonl")}
    assert statuses == {"vidA[0]": "ok", "vidA[1]": "failed", "vidB[0]": "failed", "vidC[0]": "failed",
                        "vidD[0]": "failed", "vidE[0]": "ok"}
    manifest = read_manifest(out)
    assert manifest["modalities"] == ["visual", "text"] and manifest["totals"]["skipped"] == 4
    assert manifest["features"] == {"text": [5, 300], "visual": [5, 35], "covarep": [5, 74]}


def _entries(out: Path, stage: str) -> dict[str, int]:
    """Cache entries of a stage: path -> mtime."""
    return {str(p): p.stat().st_mtime_ns for p in (out / ".cache" / stage).glob("*/*")}


def test_changing_steps_recomputes_only_the_steps_stage_and_reruns_are_byte_identical(rq, crafted, tmp_path):
    out = tmp_path / "out"
    preprocess(rq, crafted, out, "--steps", 5)
    before = {stage: _entries(out, stage) for stage in ("words", "facet", "covarep", "steps")}
    assert len(before["words"]) == 6 and len(before["steps"]) == 2    # known failures are cached too
    shards = snapshot(out)
    time.sleep(0.01)   # a rewrite would show as a newer mtime
    preprocess(rq, crafted, out, "--steps", 5)
    assert snapshot(out) == shards
    assert {stage: _entries(out, stage) for stage in before} == before
    preprocess(rq, crafted, out, "--steps", 3)
    after = {stage: _entries(out, stage) for stage in before}
    assert {s: after[s] for s in ("words", "facet", "covarep")} == {s: before[s] for s in ("words", "facet", "covarep")}
    assert len(after["steps"]) == 4 and set(before["steps"]) < set(after["steps"])
    cut = read_samples(out)["vidA[0]"]
    assert np.allclose(cut["visual.npy"][:, 0], [0.5, 2.5, 5]) and cut["visual_mask.npy"].all()


def test_binarize_ge0_and_gt0_differ_on_a_score_of_zero(rq, tmp_path):
    raw = write_raw(tmp_path / "raw", {
        "labels": {"v": label_rows((0, 1, -1 / 3), (1, 2, 0.0), (2, 3, 1 / 3))},
        "words": {"v": (word_vectors(3), [[0.2, 0.8], [1.2, 1.8], [2.2, 2.8]])},
        "facet": {"v": facet_rows([0, 1, 2], 1)}})
    out = tmp_path / "out"
    preprocess(rq, raw, out)
    ge0 = read_samples(out)
    steps = _entries(out, "steps")
    preprocess(rq, raw, out, "--binarize", "gt0")
    gt0 = read_samples(out)
    for samples, labels, names in ((ge0, [0, 1, 1], ["negative", "non-negative"]),
                                   (gt0, [0, 0, 1], ["non-positive", "positive"])):
        assert [int(samples[f"v[{k}]"]["cls"]) for k in range(3)] == labels
        assert [samples[f"v[{k}]"]["meta"]["sentiment"] for k in range(3)] == pytest.approx([-1 / 3, 0, 1 / 3])
    assert read_manifest(out)["classes"] == ["non-positive", "positive"]
    assert _entries(out, "steps") == steps          # the label is no stage's: no feature is recomputed
    assert not (tmp_path / "raw" / "CMU_MOSEI_COVAREP.csd").exists() and "covarep.npy" not in gt0["v[0]"]


def test_segments_of_one_video_never_straddle_splits(rq, tmp_path):
    raw = tmp_path / "raw"
    synth_write(MoseiSynthSettings(segments=48, segments_per_video=4, covarep=False), raw)
    out = tmp_path / "out"
    preprocess(rq, raw, out, "--val-fraction", 0.3)
    splits: dict[str, set] = {}
    for row in read_jsonl(out / "clips.jsonl"):
        splits.setdefault(row["clip_id"].split("[")[0], set()).add(row["split"])
    assert len(splits) == 12 and all(len(s) == 1 for s in splits.values())
    assert {s for (s,) in splits.values()} == {"train", "val", "test"}
    videos = sorted(splits)
    (tmp_path / "train.txt").write_text("\n".join(videos[:8]) + "\n")
    (tmp_path / "valid.txt").write_text(f"# the standard fold\n{videos[8]}\n")
    (tmp_path / "folds").write_text("\n".join(videos[9:11]) + "\n")
    preprocess(rq, raw, out, "--split-list", tmp_path / "train.txt", "--split-list", tmp_path / "valid.txt",
               "--split-list", f"test={tmp_path / 'folds'}")
    listed = {row["clip_id"]: row["split"] for row in read_jsonl(out / "clips.jsonl")}
    expected = {v: "train" for v in videos[:8]} | {videos[8]: "val"} | {v: "test" for v in videos[9:11]}
    assert listed == {f"{v}[{k}]": split for v, split in expected.items() for k in range(4)}
    unlisted = [f for f in read_jsonl(out / "failures.jsonl") if f["source"].startswith(videos[11])]
    assert len(unlisted) == 4 and unlisted[0]["reason"] == f"video {videos[11]} is in no --split-list"
    assert read_manifest(out)["splits"]["val"]["samples"] == 4


class RunsACommand:
    """What a malicious pickle holds: unpickling it would run `touch MARKER`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_a_command_is_refused(rq, tmp_path):
    marker = tmp_path / "ran"
    evil = write_pickle(tmp_path / "mosei_senti_data.pkl", {"train": {"vision": RunsACommand(marker)}})
    result = preprocess(rq, evil, tmp_path / "out", code=1)
    assert not marker.exists()
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {evil}: refused: the pickle asks for {os.system.__module__}.system;")


@pytest.mark.parametrize("protocol", [2, 4])
def test_multibench_pickle_samples_keep_their_splits_and_padding_masks(rq, tmp_path, protocol):
    rng = np.random.default_rng(0)
    data = {"train": multibench_split(rng, 4, [50, 10, 3, 7]), "valid": multibench_split(rng, 2, [5, 6]),
            "test": multibench_split(rng, 3, [8, 8, 8])}
    data["train"]["vision"][1, -10:-4] = 0          # the _noalign file: modalities of other lengths
    data["train"]["audio"][0, 3, 5] = -np.inf
    data["test"]["vision"][1, -1, 0] = np.nan
    data["test"]["text"][2] = 0
    pkl = write_pickle(tmp_path / "mosei_senti_data.pkl", data, protocol)
    out = tmp_path / "out"
    preprocess(rq, pkl, out, "--steps", 12)
    samples = read_samples(out)
    assert {k: s["meta"]["split"] for k, s in samples.items()} == {
        "train/00000": "train", "train/00001": "train", "train/00002": "train", "train/00003": "train",
        "val/00000": "val", "val/00001": "val", "test/00000": "test"}
    s = samples["train/00001"]
    assert s["text_mask.npy"].tolist() == [True] * 10 + [False] * 2
    assert s["visual_mask.npy"].tolist() == [True] * 4 + [False] * 8     # zeros on the last 6 steps are padding
    assert np.array_equal(s["text.npy"][:10], data["train"]["text"][1, -10:])
    assert samples["train/00000"]["covarep.npy"][3, 5] == 0 and samples["train/00000"]["text_mask.npy"].all()
    assert s["meta"]["id"] == ["video0", "1.0", "2.0"] and s["meta"]["video_id"] == "video0"
    assert s["meta"]["sentiment"] == pytest.approx(float(data["train"]["labels"][1, 0, 0]))
    failures = {f["clip_id"]: f["reason"] for f in read_jsonl(out / "failures.jsonl")}
    assert failures == {"test/00001": "1 non-finite FACET values",
                        "test/00002": "no text features: every step is zero (padding)"}
    shards = snapshot(out)
    preprocess(rq, pkl, out, "--steps", 12)
    assert snapshot(out) == shards


def test_damaged_and_missing_files_are_one_line(rq, crafted, tmp_path):
    facet = crafted / "CMU_MOSEI_VisualFacet42.csd"
    facet.write_bytes(facet.read_bytes()[:2000])
    line, = preprocess(rq, crafted, tmp_path / "out", code=1).stderr.strip().splitlines()
    assert line.startswith(f"error: {facet}: not a readable HDF5 computational sequence (") and "truncated file" in line
    facet.write_text("not HDF5 at all")
    assert "(file signature not found)" in preprocess(rq, crafted, tmp_path / "out", code=1).stderr
    (crafted / "CMU_MOSEI_Labels.csd").unlink()
    result = preprocess(rq, crafted, tmp_path / "out", code=2)
    assert result.stderr.strip().startswith(f"error: {crafted}: no CMU_MOSEI_Labels.csd")
    not_a_pickle = tmp_path / "data.pkl"
    not_a_pickle.write_bytes(b"\x80\x04\x95")   # a pickle header, then nothing
    assert len(preprocess(rq, not_a_pickle, tmp_path / "out", code=1).stderr.strip().splitlines()) == 1


def test_synth_mosei_is_seeded_and_follows_its_knobs(rq, tmp_path):
    args = ("synth", "--preset", "mosei", "--clips", 40, "--text-informative", 1, "--visual-informative", 0.5,
            "--visual-corrupt", 0.25)
    for name in ("a", "b"):
        assert rq(*args, "--out", tmp_path / name).exit_code == 0
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["CMU_MOSEI_COVAREP.csd", "CMU_MOSEI_Labels.csd", "CMU_MOSEI_TimestampedWordVectors.csd",
                     "CMU_MOSEI_VisualFacet42.csd", "synth.json"]
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    truth = json.loads((tmp_path / "a" / "synth.json").read_text())["segments"]
    assert len(truth) == 40 and all(t["text_class"] == t["label"] for t in truth)
    assert sum(t["corrupt"] == "visual" for t in truth) == 10 and any(t["score"] == 0 for t in truth)
    assert all(t["label"] == int(t["score"] >= 0) for t in truth)
    line, = rq("synth", "--preset", "cremad", "--out", tmp_path / "c", "--text-corrupt", 0.1).stderr.strip().splitlines()
    assert line == "error: --text-corrupt is an option of --preset mosei"
