"""`rq synth`: check the settings, plan every clip, render them over a process pool, write the
recipe's index files and synth.json, and print a table of what was made."""
import csv
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

from rq.pipeline.atomic import write_atomic, write_json
from rq.pipeline.console import err, fail, progress, summary_table
from rq.pipeline.errors import ClipError
from rq.pipeline.ffmpeg import FfmpegMissing
from rq.pipeline.synth.mosei import MoseiSynthSettings, cli_synth_mosei
from rq.pipeline.synth.plan import plan
from rq.pipeline.synth.settings import ClipSpec, SynthSettings, class_names, parse_size
from rq.pipeline.synth.signals import render_clip

_LISTING = "synth.json"   # what this module wrote into --out: settings and one row per clip
MOSEI_ONLY = ("text_informative", "text_corrupt")   # options only --preset mosei reads


def cli_synth(options: dict) -> None:
    """`rq synth`: validate (usage errors: one line, exit 2), plan, render in parallel, summarise."""
    if options.get("preset") == "mosei":   # feature files, not videos: its own generator
        return cli_synth_mosei(options)
    given = [k for k in MOSEI_ONLY if options.get(k, getattr(MoseiSynthSettings, k)) != getattr(MoseiSynthSettings, k)]
    if given:
        fail(f"--{given[0].replace('_', '-')} is an option of --preset mosei")
    options = {k: v for k, v in options.items() if k not in MOSEI_ONLY}
    out, workers, force, size = (options.pop(k) for k in ("out", "workers", "force", "size"))
    if options["preset"] is None or out is None:
        fail("rq synth needs --preset (kinetics, cremad or mosei) and --out DIR")
    for name in ("audio_corruptions", "visual_corruptions"):  # the CLI gives "noise,silence"
        if isinstance(options.get(name), str):
            options[name] = tuple(kind.strip() for kind in options[name].split(",") if kind.strip())
    try:
        settings = SynthSettings(size=parse_size(size) if size else None, **options).resolved()
    except ValueError as e:
        fail(str(e))
    if workers is not None and workers < 1:
        fail(f"--workers must be at least 1, not {workers}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        fail(f"{out}: --out is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            fail(f"{out}: --out is not empty (--force replaces what an earlier rq synth wrote there)")
        _remove_earlier(out)
    start = time.perf_counter()
    specs = plan(settings)
    failures = render(specs, settings, out, workers or os.cpu_count() or 1)
    write_listing(out, settings, specs, failures)
    _summary(settings, specs, failures, out, time.perf_counter() - start)
    if failures:
        raise SystemExit(1)


def _render_one(args: tuple[ClipSpec, SynthSettings, Path]) -> tuple[ClipSpec, str | None]:
    spec, settings, out = args
    try:
        render_clip(spec, settings, out)
    except ClipError as e:
        return spec, e.reason
    return spec, None


def render(specs: list[ClipSpec], settings: SynthSettings, out: Path, workers: int) -> dict[str, str]:
    """Render every clip over a process pool; returns {video path: one-line reason} of failed ones."""
    failures: dict[str, str] = {}
    jobs = [(spec, settings, out) for spec in specs]
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            futures = [pool.submit(_render_one, job) for job in jobs]
            for future in progress(as_completed(futures), total=len(futures), desc="synth", unit="clip"):
                spec, reason = future.result()
                if reason:
                    failures[spec.video] = reason
                    err.print(f"{spec.video}: {reason}", markup=False)
    except FfmpegMissing as e:
        fail(str(e), code=1)
    return failures


def write_listing(out: Path, settings: SynthSettings, specs: list[ClipSpec], failures: dict[str, str]) -> None:
    """The recipe's own index files (kinetics annotation CSVs) plus synth.json, rq synth's record."""
    names = class_names(settings)
    written = [s for s in specs if s.video not in failures]
    if settings.preset == "kinetics":
        for split in ("train", "val"):
            clips = [s for s in written if s.split == split]
            if not clips:   # no val/ folder either: a header-only CSV would be a usage error to rq preprocess
                (out / "annotations" / f"{split}.csv").unlink(missing_ok=True)
                continue
            text = io.StringIO(newline="")
            rows = csv.writer(text)
            rows.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for s in clips:
                youtube_id, start, end = Path(s.video).stem.rsplit("_", 2)
                rows.writerow([names[s.label], youtube_id, int(start), int(end), split])
            write_atomic(out / "annotations" / f"{split}.csv", text.getvalue().encode())
    listing = {"settings": asdict(settings), "classes": names,
               "clips": [{**asdict(s), "label_name": names[s.label]} for s in written]}
    write_json(out / _LISTING, listing, indent=1)


def _remove_earlier(out: Path) -> None:
    """--force: delete exactly what an earlier rq synth listed in synth.json (never anything else)."""
    listing = out / _LISTING
    if not listing.exists():
        fail(f"{out}: --out holds files rq synth did not write (no {_LISTING}); choose an empty folder")
    for clip in json.loads(listing.read_text(encoding="utf-8"))["clips"]:
        for rel in (clip["video"], clip["wav"]):
            if rel:
                (out / rel).unlink(missing_ok=True)
    for rel in ("annotations/train.csv", "annotations/val.csv", _LISTING):
        (out / rel).unlink(missing_ok=True)


def _summary(settings: SynthSettings, specs: list[ClipSpec], failures: dict[str, str], out: Path,
             elapsed: float) -> None:
    names = class_names(settings)
    groups: dict[tuple[str, int], list[ClipSpec]] = {}
    for s in specs:
        groups.setdefault((s.split, s.label), []).append(s)
    rows = []
    for (split, label), group in sorted(groups.items()):
        ok = [s for s in group if s.video not in failures]
        rows.append([split, names[label], len(ok), round(sum(s.seconds for s in ok), 1),
                     sum(s.audio_class == s.label and not s.audio_corruption for s in ok),
                     sum(s.visual_class == s.label and not s.visual_corruption for s in ok),
                     sum(bool(s.audio_corruption) for s in ok), sum(bool(s.visual_corruption) for s in ok)])
    done = len(specs) - len(failures)
    rows.append(["total", f"{len(names)} classes", done, *(round(sum(r[i] for r in rows), 1) for i in range(3, 8))])
    summary_table(f"rq synth {settings.preset}: {done} clips in {out} ({elapsed:.1f} s, {done / elapsed:.2f} clips/s)"
                  + (f", {len(failures)} failed" if failures else ""),
                  ["split", "class", "clips", "seconds", "own sound", "own picture", "sound corrupted",
                   "picture corrupted"], rows)
