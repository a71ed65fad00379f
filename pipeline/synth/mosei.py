"""`rq synth --preset mosei`: small CMU-MOSEI computational sequences in the SDK's layout (h5py), so
the whole MOSEI path runs with no download.

Each video is a run of labelled segments, each segment a run of words. Per segment the sentiment
score (multiples of 1/3 in [-3, 3], as three annotators' mean; a share exactly 0, where the two
binarisations differ) gives its class, positive being score >= 0. Per modality and segment, the signal
shows the segment's own class with probability `*_informative`, else the other class: every word
vector is noise plus its signal class's text prototype, every FACET row inside the segment noise plus
its visual prototype. A `*_corrupt` share of the segments has that modality replaced by louder noise
with no signal (never both modalities of one segment), like the video presets' corrupted clips.
COVAREP rows carry no signal and a few -inf values, as the real ones do in silence.

Files: CMU_MOSEI_Labels.csd ("All Labels": per segment sentiment then six emotions, with its
interval), CMU_MOSEI_TimestampedWordVectors.csd ("glove_vectors", 300-d), CMU_MOSEI_VisualFacet42.csd
("FACET 4.2", 35-d, 15 rows/s), CMU_MOSEI_COVAREP.csd ("COVAREP", 74-d, 25 rows/s), and synth.json
(the settings and every segment's truth). The same seed and options write the same files."""
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rq.pipeline.console import fail, summary_table
from rq.pipeline.recipes.mosei_sources import FILES

_LISTING = "synth.json"
_ROOTS = {"labels": "All Labels", "words": "glove_vectors", "facet": "FACET 4.2", "covarep": "COVAREP"}
_DIMS = {"words": 300, "facet": 35, "covarep": 74}
_RATES = {"facet": 15.0, "covarep": 25.0}   # feature rows per second
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class MoseiSynthSettings:
    segments: int = 40              # labelled segments in all
    segments_per_video: int = 4
    seed: int = 0
    visual_informative: float = 0.6
    text_informative: float = 0.9
    visual_corrupt: float = 0.0     # share of segments whose FACET rows are noise only
    text_corrupt: float = 0.0       # share of segments whose word vectors are noise only
    zero_scores: float = 0.1        # share of segments scored exactly 0
    covarep: bool = True

    def check(self) -> None:
        if self.segments < 1 or self.segments_per_video < 1:
            raise ValueError("--clips (segments) must be at least 1")
        for name in ("visual_informative", "text_informative", "visual_corrupt", "text_corrupt", "zero_scores"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in 0..1, not {getattr(self, name)}")
        if self.visual_corrupt + self.text_corrupt > 1:
            raise ValueError("--visual-corrupt + --text-corrupt must be at most 1 (one modality per segment)")


def write_csd(path: Path, root: str, videos: dict[str, tuple[np.ndarray, np.ndarray]], description: str = "") -> None:
    """A computational sequence in the SDK's layout: root/data/<video>/{features, intervals} and
    root/metadata (strings). `videos`: video id -> (features [T, D], intervals [T, 2])."""
    import h5py   # here: `rq synth` of the video presets imports this module too
    with h5py.File(path, "w") as f:
        group = f.create_group(root)
        data = group.create_group("data")
        for video_id, (features, intervals) in videos.items():
            v = data.create_group(video_id)
            v.create_dataset("features", data=features)
            v.create_dataset("intervals", data=np.asarray(intervals, np.float64))
        meta = group.create_group("metadata")
        for key, value in {"root name": root, "computational sequence description": description,
                           "dataset name": "CMU-MOSEI (rq synth)", "computational sequence version": "1.0",
                           "alignment compatible": "True"}.items():
            meta.create_dataset(key, data=value)


def generate(settings: MoseiSynthSettings) -> tuple[dict[str, dict], list[dict]]:
    """Per file kind, the videos' (features, intervals); and one truth row per segment."""
    rng = np.random.default_rng(settings.seed)
    protos = {"words": rng.normal(0, 1, (2, _DIMS["words"])), "facet": rng.normal(0, 1, (2, _DIMS["facet"]))}
    n = settings.segments
    corrupt = np.zeros(n, "<U6")
    order = rng.permutation(n)
    n_visual, n_text = round(settings.visual_corrupt * n), round(settings.text_corrupt * n)
    corrupt[order[:n_visual]] = "visual"
    corrupt[order[n_visual:n_visual + n_text]] = "text"
    videos = {kind: {} for kind in FILES}
    truth, taken = [], set()
    for first in range(0, n, settings.segments_per_video):
        video_id = _video_id(rng, taken)
        last = min(n, first + settings.segments_per_video)
        rows = [_segment(rng, settings, protos, corrupt[i]) for i in range(first, last)]
        t, words, segments = 0.5, [], []
        for row in rows:   # place the segments one after the other, 1 s apart
            seg_words = row.pop("words") + t
            segments.append((seg_words[0, 0] - 0.05, seg_words[-1, 1] + 0.05))
            words.append((seg_words, row.pop("vectors")))
            t = segments[-1][1] + 1.0
        duration = t
        _add_rows(videos, rng, video_id, duration, words, segments, rows, protos, settings)
        labels = np.array([[r["score"], *rng.integers(0, 10, 6) / 3] for r in rows])
        videos["labels"][video_id] = (labels, np.array(segments))
        truth += [{"video_id": video_id, "segment": k, "start": s[0], "end": s[1], **r}
                  for k, (r, s) in enumerate(zip(rows, segments))]
    return videos, truth


def _segment(rng, settings: MoseiSynthSettings, protos: dict, corrupt: str) -> dict:
    zero = rng.random() < settings.zero_scores
    label = 1 if zero else int(rng.integers(2))
    score = 0.0 if zero else (1 if label else -1) * int(rng.integers(1, 10)) / 3
    signal = {m: label if rng.random() < p else 1 - label
              for m, p in (("visual", settings.visual_informative), ("text", settings.text_informative))}
    n_words = int(rng.integers(4, 13))
    lengths, gaps = rng.uniform(0.15, 0.5, n_words), rng.uniform(0.0, 0.1, n_words)
    starts = np.cumsum(np.concatenate([[0.0], (lengths + gaps)[:-1]]))
    noise = rng.normal(0, 0.4, (n_words, _DIMS["words"]))
    vectors = noise * 2.5 if corrupt == "text" else noise + 0.25 * protos["words"][signal["text"]]
    return {"score": score, "label": label, "visual_class": signal["visual"], "text_class": signal["text"],
            "corrupt": corrupt or None, "n_words": n_words,
            "words": np.stack([starts, starts + lengths], 1), "vectors": vectors.astype(np.float32)}


def _add_rows(videos: dict, rng, video_id: str, duration: float, words, segments, rows, protos,
              settings: MoseiSynthSettings) -> None:
    """The video's word, FACET and COVAREP sequences."""
    videos["words"][video_id] = (np.concatenate([v for _, v in words]), np.concatenate([w for w, _ in words]))
    for kind in ("facet", "covarep") if settings.covarep else ("facet",):
        step = 1 / _RATES[kind]
        starts = np.arange(0, duration, step)
        features = rng.normal(0, 1, (len(starts), _DIMS[kind])).astype(np.float32)
        if kind == "covarep":   # silence gives -inf log energies in the real files
            features[rng.random(len(starts)) < 0.02, 0] = -np.inf
        else:
            for (start, end), row in zip(segments, rows):
                inside = (starts + step > start) & (starts < end)
                if row["corrupt"] == "visual":
                    features[inside] *= 3
                else:
                    features[inside] += 0.3 * protos["facet"][row["visual_class"]]
        videos[kind][video_id] = (features, np.stack([starts, starts + step], 1))


def _video_id(rng, taken: set[str]) -> str:
    while True:
        video_id = "".join(rng.choice(list(_ID_CHARS), 11))
        if video_id not in taken and not video_id.startswith("-"):
            taken.add(video_id)
            return video_id


def cli_synth_mosei(options: dict) -> None:
    """`rq synth --preset mosei`: the video presets' options that mean something here are --clips
    (segments), --seed, --visual-informative, --visual-corrupt and the MOSEI ones."""
    out = options["out"]
    settings = MoseiSynthSettings(segments=options["clips"], seed=options["seed"],
                                  visual_informative=options["visual_informative"],
                                  text_informative=options["text_informative"],
                                  visual_corrupt=options["visual_corrupt"], text_corrupt=options["text_corrupt"])
    try:
        settings.check()
    except ValueError as e:
        fail(str(e))
    out = Path(out)
    if out.exists() and not out.is_dir():
        fail(f"{out}: --out is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        if not options["force"]:
            fail(f"{out}: --out is not empty (--force replaces what an earlier rq synth --preset mosei wrote there)")
        _remove_earlier(out)
    start = time.perf_counter()
    write(settings, out)
    _summary(json.loads((out / _LISTING).read_text())["segments"], out, time.perf_counter() - start)


def write(settings: MoseiSynthSettings, out: Path) -> None:
    """The .csd files and synth.json into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    videos, truth = generate(settings)
    written = []
    for kind, name in FILES.items():
        if videos[kind]:
            write_csd(out / name, _ROOTS[kind], videos[kind], f"rq synth {kind}")
            written.append(name)
    listing = {"settings": asdict(settings), "files": written + [_LISTING], "segments": truth}
    (out / _LISTING).write_text(json.dumps(listing, indent=1) + "\n", encoding="utf-8")


def _remove_earlier(out: Path) -> None:
    """--force: delete exactly the files an earlier rq synth --preset mosei listed (never anything else)."""
    try:
        files = json.loads((out / _LISTING).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        fail(f"{out}: --out holds files rq synth --preset mosei did not write (no {_LISTING} of one); "
             "choose an empty folder")
    for name in files:
        if Path(name).name == name:   # plain names in --out only
            (out / name).unlink(missing_ok=True)


def _summary(truth: list[dict], out: Path, elapsed: float) -> None:
    rows = []
    for label in (0, 1):
        group = [t for t in truth if t["label"] == label]
        rows.append([label, len(group), sum(t["score"] == 0 for t in group),
                     sum(t["visual_class"] == label for t in group), sum(t["text_class"] == label for t in group),
                     sum(t["corrupt"] is not None for t in group)])
    videos = len({t["video_id"] for t in truth})
    summary_table(f"rq synth mosei: {len(truth)} segments of {videos} videos in {out} ({elapsed:.1f} s)",
                  ["class (score >= 0)", "segments", "score 0", "own visual", "own text", "corrupted"], rows)
