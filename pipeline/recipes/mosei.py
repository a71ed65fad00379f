"""`rq preprocess mosei`: CMU-MOSEI (visual + text, binary sentiment) as shards, from the
CMU-MultimodalSDK's computational sequences (`--raw DIR` of .csd files) or from MultiBench's pickle
(`--raw mosei_senti_data.pkl`, or the `_noalign` one).

A sample is one labelled segment (mosei_sources.py finds them); its stages (pipeline/stages/features.py,
steps.py) align each modality to the segment's words and cut or pad it to `--steps`, through the same
runner, cache, shard writer and manifest as the video recipes (`rq.pipeline.preprocess.produce`).

The label is the sentiment binarised by `--binarize`: "ge0" (score >= 0 is positive, the default) is the
rule of BalanceBenchmark's MOSEI loader, whose preprocessing the official RollingQ README points to (both
GeWu-Lab repositories); "gt0" (score > 0) is MultiBench's. They differ on the segments scored exactly 0, which are many.
The raw score is kept in every sample's json. Splits: `--split-list` fold files of video ids (the SDK's
standard folds), else seeded by video id; the pickle keeps its own train / valid / test."""
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from rq.pipeline.cache import Cache
from rq.pipeline.console import fail
from rq.pipeline.csd import CsdError
from rq.pipeline.preprocess import Run, dry_run as plan_only, produce
from rq.pipeline.recipes.layout import LayoutError
from rq.pipeline.recipes.mosei_sources import discover_csd, discover_pickle, read_folds, seeded_video_split
from rq.pipeline.runner import ClipResult, Job
from rq.pipeline.safe_pickle import RefusedPickle
from rq.pipeline.shards import Sample, build_sample
from rq.pipeline.stages import mosei_stages
from rq.pipeline.stages.settings import StepsSettings

RECIPE = "mosei"
SPLITS = ("train", "val", "test")
MODALITIES = ("visual", "text")        # what a model trains on; COVAREP is stored, for later
BINARIZE = {"ge0": ("negative", "non-negative"), "gt0": ("non-positive", "positive")}   # class names per rule


@dataclass(frozen=True)
class MoseiSettings:
    """What determines a MOSEI shards folder's content (the manifest's "config")."""
    steps: StepsSettings = field(default_factory=StepsSettings)
    binarize: str = "ge0"
    split_list: tuple[str, ...] = ()      # fold files of video ids; none: seeded by video id
    test_fraction: float = 0.2            # seeded split: share of the videos in test (the SDK's folds: ~20%)
    val_fraction: float = 0.1             # seeded split: share of the other videos in val
    shard_size_mb: float = 100.0
    seed: int = 0

    def to_dict(self, source: str, stage_versions: dict[str, int]) -> dict:
        d = asdict(self)
        return {"source": source, "steps": d.pop("steps"), **d, "split_list": list(self.split_list),
                "stage_versions": stage_versions}


def preprocess(raw: Path | None = None, out: Path | None = None, steps: int = 50, binarize: str = "ge0",
               split_list=(), test_fraction: float = MoseiSettings.test_fraction,
               val_fraction: float = MoseiSettings.val_fraction, shard_size: float = 100.0, workers: int | None = None,
               seed: int = 0, max_failure_rate: float = 0.05, cache: Path | None = None, hash_content: bool = False,
               force=(), dry_run: bool = False) -> None:
    """The whole command. Exits 2 on a usage error, 1 when too many segments were skipped."""
    settings = MoseiSettings(StepsSettings(steps), binarize, tuple(split_list), test_fraction, val_fraction,
                             shard_size, seed)
    raw, out = _check(raw, out, settings, workers, max_failure_rate, cache)
    cache_root = Path(cache or out / ".cache")
    source = "pickle" if raw.is_file() else "csd"
    classes = BINARIZE[binarize]
    try:
        if source == "pickle":
            found = discover_pickle(raw, cache_root, classes, binarize)
        else:
            splits = read_folds(settings.split_list) if settings.split_list else \
                seeded_video_split(seed, test_fraction, val_fraction)
            found = discover_csd(raw, classes, binarize, splits)
    except LayoutError as e:
        fail(str(e))
    except (CsdError, RefusedPickle) as e:   # a data file that is damaged, not HDF5, or a pickle that asks to run code
        fail(str(e), code=1)
    missing = [m for m in MODALITIES if m not in found.dims]
    if missing:
        fail(f"--raw {raw}: no {' or '.join(missing)} features in any video")
    stages = mosei_stages(source, covarep="covarep" in found.dims)
    names = tuple(s.name for s in stages)
    if not set(force) <= {*names, "all"}:
        fail(f"--force takes a stage: {', '.join(names)} or all")
    job = Job(cache_root, {"steps": settings.steps}, frozenset(names if "all" in force else force),
              hash_content=hash_content, stages=stages)
    if dry_run:
        return plan_only(found.discovery, job, Cache(cache_root))
    shapes = {m: [steps, d] for m, d in found.dims.items()}
    produce(Run(RECIPE, out, job, workers, seed, int(shard_size * 1e6),
                max_failure_rate, partial(segment_sample, settings=settings),
                settings.to_dict(source, {s.name: s.version for s in stages}), frames_per_clip=0,
                val_fraction=val_fraction, splits=SPLITS, extra={"modalities": list(MODALITIES), "features": shapes}),
            found.discovery)


def segment_sample(result: ClipResult, frame_members: int, settings: MoseiSettings) -> Sample:
    """A processed segment's sample: its json (the raw sentiment among it), class, features and masks.
    `frame_members` (the frames every sample carries) is 0: segments have features, no frames."""
    seg = result.clip
    meta = {"clip_id": seg.clip_id, "video_id": seg.video_id, "label": seg.label, "label_name": seg.label_name,
            "split": seg.split, "sentiment": seg.score, "binarize": settings.binarize, "source": seg.rel_source,
            "steps": settings.steps.steps}
    if seg.start is not None:
        meta |= {"start": seg.start, "end": seg.end, "emotions": list(seg.emotions)}
    if seg.sample_id:
        meta["id"] = list(seg.sample_id)
    return build_sample(result, meta)


def _check(raw: Path | None, out: Path | None, s: MoseiSettings, workers, max_failure_rate, cache) -> tuple[Path, Path]:
    """Usage errors, one line each, before any work."""
    if raw is None:
        fail("--raw is required: a folder of the SDK's CMU-MOSEI .csd files, or MultiBench's mosei_senti_data.pkl")
    if not raw.exists():
        fail(f"--raw {raw}: no such file or folder")
    if out is None:
        fail("--out DIR is required: the folder for shards, manifest and cache")
    for name, path in (("--out", out), ("--cache", cache)):
        if path is not None and path.exists() and not path.is_dir():
            fail(f"{name} {path}: is a file, not a folder")
    checks = [(s.steps.steps >= 1, "--steps must be >= 1"),
              (s.binarize in BINARIZE, f"--binarize must be {' or '.join(BINARIZE)}"),
              (0 <= s.test_fraction < 1 and 0 <= s.val_fraction < 1,
               "--test-fraction and --val-fraction must be in [0, 1)"),
              (s.shard_size_mb > 0, "--shard-size must be > 0"),
              (workers is None or workers >= 1, "--workers must be >= 1"),
              (0 <= max_failure_rate <= 1, "--max-failure-rate must be in 0..1"),
              (not (raw.is_file() and s.split_list), "--split-list: the pickle has its own train/valid/test splits")]
    for ok, message in checks:
        if not ok:
            fail(message)
    return raw.absolute(), out.absolute()
