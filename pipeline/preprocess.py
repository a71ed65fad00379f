"""`rq preprocess`: discover clips with a recipe, run every clip through the cached stages on the
executor, write the shards that changed, the manifest and the audit files, and print what happened."""
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tqdm import tqdm

from rq.pipeline.atomic import WriteError, remove_stale_temporaries
from rq.pipeline.cache import Cache, DamagedEntry
from rq.pipeline.clips import Discovery
from rq.pipeline.console import err, fail, out as console, summary_table, rate_limited
from rq.pipeline.errors import ExecutorError
from rq.pipeline.executors import executor_problem, map_unordered, open_executor
from rq.pipeline.ffmpeg import FfmpegMissing, ffmpeg_location
from rq.pipeline.generations import retire_superseded
from rq.pipeline.indexes import write_indexes
from rq.pipeline.lock import FolderBusy, writer_lock
from rq.pipeline.manifest import CLIPS, FAILURES, build_manifest, read_manifest, write_jsonl, write_manifest
from rq.pipeline.recipes import RECIPES, LayoutError
from rq.pipeline.recipes.layout import carve_validation, keep_classes_with_clips
from rq.pipeline.config import Options
from rq.pipeline.stages.settings import FRAME_TIMES
from rq.pipeline.shards import Sample, frames_per_sample, make_sample, shuffled, write_split
from rq.pipeline.runner import ClipResult, Job, lost_clip, plan_clip, process_clip
from rq.pipeline.stages import STAGE_NAMES, STAGES

SPLITS = ("train", "val", "test")
_REPAIRS = 3   # passes that may each find and recompute damaged cache entries


def preprocess(recipe: str, **options) -> None:
    """The whole command. Exits 2 on a usage error, 1 when too many clips were skipped."""
    opts = Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
    module = RECIPES[recipe]
    raw, out = _check(opts, recipe)
    try:
        config = opts.config(module)
    except ValueError as e:   # an --audio-features combination that does not fit (frontends.resolve)
        fail(str(e))
    settings = config.stage_settings()
    if recipe == "folder" and (out == raw or raw in out.parents):
        fail(f"--out {out} is inside --raw {raw}: the folder recipe would take it for a class folder")
    cache_root = Path(opts.cache or out / ".cache").absolute()   # tasks on other machines (Ray) get absolute paths
    try:
        recipe_options = config.recipe_options(extract_to=cache_root)
        found = module.discover(raw, recipe_options)
    except LayoutError as e:
        fail(str(e))
    found, empty = keep_classes_with_clips(carve_validation(found, recipe_options))
    if empty:
        err.print(f"warning: {len(empty)} of the {len(empty) + len(found.classes)} listed classes have no clips and "
                  f"are left out of the class list: {', '.join(empty)}", markup=False)
    cache = Cache(cache_root)
    job = Job(cache.root, settings, frozenset(STAGE_NAMES if "all" in opts.force else opts.force), opts.timeout,
              opts.hash_content)
    if opts.dry_run:
        return dry_run(found, job, cache)
    try:
        ffmpeg_location()
    except FfmpegMissing as e:
        fail(str(e))
    produce(Run(recipe, out, job, opts.workers, opts.seed, int(opts.shard_size * 1e6), opts.max_failure_rate,
                partial(make_sample, settings=settings), config.to_dict({s.name: s.version for s in STAGES}),
                opts.frames_per_clip or module.FRAMES_PER_CLIP, opts.val_fraction, executor=opts.executor,
                ray_address=opts.ray_address), found)


@dataclass(frozen=True)
class Run:
    """What the second half of `rq preprocess` needs, the same for every recipe: where to write, how to
    run the clips (the job carries the recipe's stage set), and what a recipe makes its own way."""
    recipe: str
    out: Path
    job: Job
    workers: int | None                      # None: every core (of the Ray cluster with executor "ray")
    seed: int
    shard_bytes: int
    max_failure_rate: float
    # a processed clip's shard sample, given the dataset's frames_per_sample (the frame members of every sample)
    sample: Callable[[ClipResult, int], Sample]
    config: dict                             # the manifest's "config"
    frames_per_clip: int
    val_fraction: float                      # what the warning on an empty val split names
    splits: tuple[str, ...] = SPLITS
    extra: dict | None = None                # further manifest entries (sequence features)
    executor: str = "process"                # --executor (pipeline/executors)
    ray_address: str | None = None


def produce(run: Run, found: Discovery) -> None:
    """Run every clip through the stages, write the shards that changed, the manifest, its indexes and
    the audit files, and print what happened; exit 1 when too many clips were skipped. Holds the
    output folder's writer lock throughout (a second rq preprocess into it stops with one line)."""
    try:
        with writer_lock(run.out, f"rq preprocess {run.recipe}"):
            _produce(run, found)
    except (FolderBusy, WriteError) as e:
        fail(str(e), code=1)
    finally:
        rate_limited.flush()


def _produce(run: Run, found: Discovery) -> None:
    out, job = run.out, run.job
    cache = Cache(job.cache_root)
    start = time.perf_counter()
    remove_stale_temporaries(out)
    for attempt in range(_REPAIRS + 1):
        results = _process_clips(found, job, cache, run)
        ok = [r for r in results if r.failure is None]
        frame_members = frames_per_sample(ok)   # one count for every split: a dataset has one set of member names
        by_split = {split: shuffled([run.sample(r, frame_members) for r in ok if r.clip.split == split], run.seed)
                    for split in run.splits}
        try:
            outcomes = _write_shards(out, by_split, run.shard_bytes, cache)
            break
        except DamagedEntry as e:
            # The entry's header said "cached" but its bytes fail their hashes: drop it, and the next
            # pass recomputes that clip (every other clip is settled from the cache in milliseconds).
            cache.remove(e.stage, e.key)
            err.print(f"warning: {e}: removed, recomputing", markup=False)
    else:
        fail(f"cache entries under {cache.root} keep failing their checks; is the disk healthy?", code=1)
    skipped = len(results) - len(ok)
    manifest = build_manifest(
        run.recipe, run.config, found.classes, run.frames_per_clip, {split: o.entry for split, o in outcomes.items()},
        len(found.clips), skipped, len(found.rejected),
        ({"frames_per_sample": frame_members} if frame_members else {}) | (run.extra or {}))
    write_manifest(out, manifest)   # commits the new shards: readers opening the folder now see them
    write_indexes(out, manifest)
    kept = retire_superseded(out, {s["name"] for entry in manifest["splits"].values() for s in entry["shards"]})
    if kept:
        err.print(f"note: kept {len(kept)} earlier shards ({kept[0]}, ...): a running reader still uses them; "
                  "the next rq preprocess removes them", markup=False)
    _write_audit(out, results, found)
    _summary(results, found, outcomes, time.perf_counter() - start, out, _names(job), run.val_fraction)
    if found.clips and skipped / len(found.clips) > run.max_failure_rate:
        fail(f"{skipped} of {len(found.clips)} clips skipped ({skipped / len(found.clips):.1%}), more than "
             f"--max-failure-rate {run.max_failure_rate:g}; the reasons are in {out / FAILURES}", code=1)


def _names(job: Job) -> tuple[str, ...]:
    return tuple(s.name for s in job.stages)


def _write_shards(out: Path, by_split: dict[str, list], shard_bytes: int, cache: Cache) -> dict:
    """Each split's shards; a changed split is written as a new generation beside the committed one,
    which stays usable until the new manifest commits the new set (rq.pipeline.generations)."""
    committed = (read_manifest(out) or {}).get("splits", {})
    return {split: write_split(out, split, samples, shard_bytes, cache, committed.get(split))
            for split, samples in by_split.items()}


def _check(opts: Options, recipe: str) -> tuple[Path, Path]:
    """Usage errors, one line each, before any work."""
    if opts.raw is None:
        fail("--raw DIR is required: the raw dataset folder")
    if recipe != "wds" and not opts.raw.is_dir():   # wds: tar patterns, checked when they are read
        fail(f"--raw {opts.raw}: no such folder")
    if opts.out is None:
        fail("--out DIR is required: the folder for shards, manifest and cache")
    for name, path in (("--out", opts.out), ("--cache", opts.cache)):
        if path is not None and path.exists() and not path.is_dir():
            fail(f"{name} {path}: is a file, not a folder")
    if opts.classes is not None and not opts.classes.is_file():
        fail(f"--classes {opts.classes}: no such file")
    checks = [(opts.frame_size >= 0, "--frame-size must be >= 0"),
              (opts.frame_decode in ("exact", "fast"), "--frame-decode must be exact or fast"),
              (1 <= opts.jpeg_quality <= 100, "--jpeg-quality must be in 1..100"),
              (opts.frame_times in FRAME_TIMES, f"--frame-times must be one of {', '.join(FRAME_TIMES)}"),
              (opts.sample_rate is None or opts.sample_rate > 0, "--sample-rate must be > 0"),
              (opts.audio_seconds is None or opts.audio_seconds > 0, "--audio-seconds must be > 0"),
              (opts.audio_pad in ("repeat", "zero"), "--audio-pad must be repeat or zero"),
              (opts.missing_audio in ("skip", "silence"), "--missing-audio must be skip or silence"),
              (all(n is None or n > 0 for n in (opts.n_fft, opts.hop_length)), "--n-fft and --hop-length must be > 0"),
              (opts.shard_size > 0, "--shard-size must be > 0"),
              (opts.workers is None or opts.workers >= 1, "--workers must be >= 1"),
              (opts.timeout > 0, "--timeout must be > 0"),
              (0 <= opts.max_failure_rate <= 1, "--max-failure-rate must be in 0..1"),
              (0 <= opts.test_fraction < 1, "--test-fraction must be in [0, 1)"),
              (0 <= opts.val_fraction < 1, "--val-fraction must be in [0, 1)"),
              (opts.frames_per_clip is None or opts.frames_per_clip >= 1, "--frames-per-clip must be >= 1"),
              (set(opts.force) <= {*STAGE_NAMES, "all"}, f"--force takes a stage: {', '.join(STAGE_NAMES)} or all")]
    for ok, message in checks:
        if not ok:
            fail(message)
    if problem := executor_problem(opts.executor, opts.ray_address):
        fail(problem)
    return (opts.raw if recipe == "wds" else opts.raw.absolute()), opts.out.absolute()


def _process_clips(found: Discovery, job: Job, cache: Cache, run: Run) -> list[ClipResult]:
    cache.root.mkdir(parents=True, exist_ok=True)
    cache.clean()
    # Settled clips (all cached, or known to fail) only read a few cache headers: doing that here costs
    # less than shipping them to worker processes, and a no-change rerun then starts no pool at all.
    # Each clip is planned once, here (with --hash-content that reads the file), and runs with that plan.
    planned = [(clip, plan_clip(clip, job, cache)) for clip in found.clips]
    work = [p for p in planned if not p[1].settled]
    first = [path for path in (work[0][0].source, work[0][0].audio_source) if path] if work else []
    executor = open_executor(run.executor, workers=run.workers, address=run.ray_address, reads=first,
                             writes=cache.root, lost=lost_clip)
    batches = [([p for p in planned if p[1].settled], partial(map_unordered, workers=1), "cached clips"),
               (work, executor.map, "clips")]
    results = []
    try:
        with executor:
            for items, map_clips, desc in batches:
                for result in map_clips(partial(process_clip, job=job), items, desc=desc, unit="clip") if items else ():
                    if result.failure:
                        rate_limited.warn("skipped clips", f"skipped {result.clip.rel_source}: {result.failure[0]}: "
                                          f"{result.failure[1]}", hint=f"every one is in {FAILURES}", write=_above_bar)
                    elif "frames" in result.heads and (note := (result.heads["frames"].meta or {}).get("note")):
                        # kept, with fewer frames
                        rate_limited.warn("clips kept with fewer frames", f"{result.clip.rel_source}: frames: {note}",
                                          hint="each noted as frames_note in its sample's json", write=_above_bar)
                    results.append(result)
    except (FfmpegMissing, ExecutorError) as e:
        fail(str(e))
    return sorted(results, key=lambda r: r.clip.clip_id)


def _stage_counts(rows: list[dict[str, tuple[str, float]]], names: tuple[str, ...]) -> list[list]:
    """Per stage: computed, cached, failed, seconds (node ids like probe@audio count as their stage)."""
    counts = {name: Counter() for name in names}
    seconds = Counter()
    for states in rows:
        for node_id, (state, took) in states.items():
            counts[node_id.split("@")[0]][state] += 1
            seconds[node_id.split("@")[0]] += took
    return [[name, c["computed"], c["cached"], c["failed"], round(seconds[name], 2)] for name, c in counts.items()]


def dry_run(found: Discovery, job: Job, cache: Cache) -> None:
    """`--dry-run`: per stage, what a run would compute and what is cached."""
    names = _names(job)
    rows = []
    for clip in found.clips:
        plan = plan_clip(clip, job, cache)
        states = {node.id: ("cached", 0.0) if node.id in plan.heads else ("computed", 0.0) for node in plan.nodes}
        if plan.failure:  # a known failure stops the clip there: nothing after it would run
            failed_at = names.index(plan.failure[0])
            states = {n: s for n, s in states.items() if names.index(n.split("@")[0]) < failed_at}
            states[plan.failure[0]] = ("failed", 0.0)
        rows.append(states)
    summary_table("Plan (dry run: nothing decoded or written)", ["stage", "to compute", "cached", "known failures"],
                  [row[:4] for row in _stage_counts(rows, names)])
    summary_table("Inputs", ["", "count"], [["clips", len(found.clips)], ["unmatched files or annotations",
                                                                        len(found.rejected)],
                                            ["clips of other classes", found.other_classes]])


def _above_bar(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def _write_audit(out: Path, results: list[ClipResult], found: Discovery) -> None:
    clips = []
    for r in results:
        row = {"clip_id": r.clip.clip_id, "split": r.clip.split, "label": r.clip.label,
               "label_name": r.clip.label_name, "source": r.clip.rel_source,
               "status": "failed" if r.failure else "ok"}
        clips.append(row | ({"audio_source": r.clip.rel_audio_source} if r.clip.rel_audio_source else {}))
    failures = [{"source": r.clip.rel_source, "clip_id": r.clip.clip_id, "stage": r.failure[0], "reason": r.failure[1]}
                for r in results if r.failure]
    failures += [{"source": x.source, "clip_id": None, "stage": "discover", "reason": x.reason} for x in found.rejected]
    write_jsonl(out / CLIPS, clips)
    write_jsonl(out / FAILURES, sorted(failures, key=lambda f: f["source"]))


def _summary(results: list[ClipResult], found: Discovery, outcomes: dict, seconds: float, out: Path,
             names: tuple[str, ...], val_fraction: float) -> None:
    summary_table("Stages", ["stage", "computed", "cached", "failed", "time (s)"],
                  _stage_counts([r.states for r in results], names))
    skipped = sum(r.failure is not None for r in results)
    rows = [["clips ok", len(results) - skipped], ["clips skipped", skipped],
            ["unmatched files or annotations", len(found.rejected)], ["clips of other classes", found.other_classes]]
    rows += [[f"{split}: samples / shards written / unchanged",
              f"{o.entry['samples']} / {o.written} / {o.unchanged}"] for split, o in outcomes.items()]
    summary_table("Output", ["", "count"], rows)
    console.print(f"{out} in {seconds:.1f} s; skipped clips and unmatched files: {out / FAILURES}")
    for split, o in outcomes.items():
        if split == "val" and not o.entry["samples"] and val_fraction > 0:
            err.print(f"warning: the val split is empty (--val-fraction {val_fraction:g} of the train clips "
                      "rounds to none): rq train will keep the last epoch as best.pt", markup=False)
        elif split != "val" and not o.entry["samples"]:  # e.g. --split speaker on a handful of actors
            err.print(f"warning: the {split} split is empty", markup=False)
