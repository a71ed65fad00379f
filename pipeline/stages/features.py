"""Stages of CMU-MOSEI segments: each modality's features as one row per word of the segment.

A clip here is a labelled segment [start, end] of a video; its `part` names the video and the interval
(the feature files hold every video). Stage `words` reads the GloVe word vectors: the words whose
interval overlaps the segment (the SDK's intersection rule), their intervals clipped to the segment,
and their vectors (the text modality, one row per word). Stages `facet` and `covarep` align their
sequence to those words: the row of a word is the mean of the feature rows whose interval overlaps the
word's (for a zero-length word, the rows that contain its instant). Stage `sample` reads one sample of
MultiBench's pickle, already aligned: the rows of each modality between its leading and trailing
all-zero steps (the padding). Members are `<modality>.rows.npy` (float32 [n, D]); stage `steps`
(steps.py) cuts and pads them.

What makes a segment fail (recorded, skipped, cached as known-bad): no words inside it, a video
missing from a modality's file, a word no feature row overlaps (the segment lies outside that video's
data), non-finite visual or text features, a modality that is all padding. COVAREP, kept for later and
not trained on, has its non-finite values (log energies of silence: -inf) set to 0, as BalanceBenchmark
does, instead of failing the segment."""
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rq.pipeline.csd import CsdError, Video, open_csd
from rq.pipeline.errors import ClipError
from rq.pipeline.stages.audio import to_npy

VERSION = 1
ROWS = ".rows.npy"   # member suffix of a modality's rows: "visual.rows.npy"
NAMES = {"visual": "FACET", "text": "GloVe", "covarep": "COVAREP"}


def segment_of(part: str) -> tuple[str, float, float]:
    """(video id, start, end) from a segment clip's part: '["vid", start, end]'."""
    video_id, start, end = json.loads(part)
    return video_id, float(start), float(end)


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def words_stage(path: Path, inputs: Mapping, settings, timeout: float, part: str) -> dict[str, bytes]:
    video_id, start, end = segment_of(part)
    rows = _video("words", path, video_id)
    ws, we = rows.intervals[:, 0], rows.intervals[:, 1]
    inside = np.flatnonzero((ws < end) & (we > start) | (ws == we) & (ws >= start) & (ws < end))
    if not len(inside):
        raise ClipError("words", f"no words inside the segment {start:g}-{end:g} s of video {video_id}")
    intervals = np.clip(rows.intervals[inside], start, end)
    vectors = rows.features[inside].astype(np.float32)
    _check_finite("words", "text", vectors)
    return {"intervals.npy": to_npy(intervals), "text" + ROWS: to_npy(vectors)}


def facet_stage(path: Path, inputs: Mapping, settings, timeout: float, part: str) -> dict[str, bytes]:
    rows = _word_aligned("facet", "visual", path, inputs, part)
    _check_finite("facet", "visual", rows)
    return {"visual" + ROWS: to_npy(rows)}


def covarep_stage(path: Path, inputs: Mapping, settings, timeout: float, part: str) -> dict[str, bytes]:
    return {"covarep" + ROWS: to_npy(_word_aligned("covarep", "covarep", path, inputs, part, finite_only=True))}


def sample_stage(path: Path, inputs: Mapping, settings, timeout: float) -> dict[str, bytes]:
    """One sample of the pickle, as the recipe copied it: an .npz of [steps, D] arrays per modality."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {m: npz[m] for m in npz.files}
    except (OSError, ValueError) as e:
        raise ClipError("sample", f"cannot read {path.name}: {e}") from None
    out = {}
    for modality, array in sorted(arrays.items()):
        if array.ndim != 2:
            raise ClipError("sample", f"{modality} features have shape {array.shape}, expected [steps, D]")
        rows = unpadded(array.astype(np.float32))
        if modality == "covarep":
            rows = np.where(np.isfinite(rows), rows, 0).astype(np.float32)
        elif not len(rows):
            raise ClipError("sample", f"no {modality} features: every step is zero (padding)")
        _check_finite("sample", modality, rows)
        out[modality + ROWS] = to_npy(rows)
    return out


def unpadded(array: np.ndarray) -> np.ndarray:
    """The rows between the leading and the trailing all-zero rows (zero rows inside are kept)."""
    used = np.flatnonzero(np.any(array != 0, axis=1))
    return array[used[0]:used[-1] + 1] if len(used) else array[:0]


def align(intervals: np.ndarray, features: np.ndarray, words: np.ndarray) -> np.ndarray | None:
    """Per word [start, end], the mean of the feature rows whose interval overlaps it (a zero-length
    word: the rows containing its instant), float32 [n_words, D]; None when some word has no row."""
    rs, re = intervals[:, 0][None, :], intervals[:, 1][None, :]
    ws, we = words[:, :1], words[:, 1:]
    overlap = np.where(ws < we, (rs < we) & (re > ws), (rs <= ws) & (re > ws))   # [n_words, n_rows]
    if not overlap.any(1).all():
        return None
    # Row by row, not a matrix product: there a non-finite row would poison every word (0 * inf = nan).
    return np.stack([features[rows].astype(np.float64).mean(0) for rows in overlap]).astype(np.float32)


def _word_aligned(stage: str, modality: str, path: Path, inputs: Mapping, part: str,
                  finite_only: bool = False) -> np.ndarray:
    """The modality's rows aligned to the segment's words; `finite_only`: non-finite values count as 0."""
    video_id, start, end = segment_of(part)
    words = load_npy(inputs["words"]["intervals.npy"])
    rows = _video(stage, path, video_id)
    # Only rows near the segment take part: a video's rows are many, its words few.
    near = (rows.intervals[:, 0] <= end) & (rows.intervals[:, 1] >= start)
    features = rows.features[near]
    if finite_only:
        features = np.where(np.isfinite(features), features, 0)
    aligned = align(rows.intervals[near], features, words)
    if aligned is None:
        span = f"{rows.intervals[:, 0].min():g}-{rows.intervals[:, 1].max():g} s" if len(rows.intervals) else "none"
        raise ClipError(stage, f"the segment {start:g}-{end:g} s lies outside the {NAMES[modality]} data of "
                               f"video {video_id} ({span}): some words have no feature row")
    return aligned


def _video(stage: str, path: Path, video_id: str) -> Video:
    try:
        with open_csd(path) as seq:
            if video_id not in seq:
                raise ClipError(stage, f"video {video_id} is missing from {path.name}")
            return seq.video(video_id)
    except CsdError as e:
        raise ClipError(stage, str(e)) from None


def _check_finite(stage: str, modality: str, rows: np.ndarray) -> None:
    bad = int(np.size(rows) - np.isfinite(rows).sum())
    if bad:
        raise ClipError(stage, f"{bad} non-finite {NAMES.get(modality, modality)} values")
