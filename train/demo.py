"""`rq demo`: the whole product on generated data, in-process, each stage reused when nothing it
depends on changed (and the screen says which were reused, and why the others ran):

  raw/      rq synth, kinetics layout: audio the more reliable modality, the picture informative but
            fainter; the sound of a set share of clips (train and test) corrupted, so attention has
            something to react to. Reused when raw/synth.json records the same settings and every clip.
  shards/   rq preprocess kinetics (train / val carved out of train / test): its own per-(clip, stage)
            cache; a rerun shows its cached counts.
  runs/mt/seed<N>, runs/rollingq/seed<N>
            rq train, tiny preset, Vanilla MT and RollingQ on the same seeds, best.pt selected on val.
            Reused when config.json holds the same config and last.pt finished every epoch on the same
            shards; resumed when it stopped early; retrained (saying why) otherwise.
  runs/*/seed<N>/eval/eval.json (+ per_sample.json)
            rq eval of best.pt: audio-noise sweep + noisy-half Pearson test. Reused when newer than
            best.pt and made with the same settings on the same shards.
  report/   rq report of both methods, seeds aggregated, every comparison tested (always redrawn).

The generator's knobs were tuned once, on Vanilla MT alone with a seed the demo does not use (the
README says how), before RollingQ was run on them; the report states whatever the numbers are."""
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from rq.pipeline.console import fail, out as console, summary_table
from rq.pipeline.preprocess import preprocess
from rq.pipeline.synth import SynthSettings, cli_synth, parse_size
from rq.train.trainer.checkpoint import load_checkpoint
from rq.train.trainer.config import TrainConfig, cli_errors
from rq.train.trainer.seeds import seed_runs
from rq.pipeline.shards import sample_key
from rq.train.evaluation.evaluate import EvalConfig, evaluate_checkpoint
from rq.train.evaluation.metrics import pearson
from rq.train.evaluation.significance import better, over_seeds, spread
from rq.train.report.page import ReportError, show, write_report
from rq.train.trainer.fit import fit

METHODS = ("mt", "rollingq")
# What does not change the result of a training run (where the data is, how it is run): not compared.


@dataclass(frozen=True)
class DemoSettings:
    # The generated dataset (rq synth --preset kinetics), tuned once on Vanilla MT alone (README): the sound
    # is its own class's in 95% of clips, clean, the easy and dominant modality; the picture its own class's
    # in 80%, a faint, noisy tint of the class colour (contrast 0.2) that the tiny model learns more
    # slowly. In 30% of the clips of every split the sound is corrupted (white noise or silence in place of
    # the tone): there only the picture tells the class, a reason to move attention off the audio.
    clips: int = 240
    classes: int = 6
    seconds: float = 2.0
    size: str = "96x64"
    fps: float = 5.0
    audio_informative: float = 0.95
    visual_informative: float = 0.8
    audio_noise: float = 0.0
    visual_noise: float = 0.5
    visual_cue: str = "colour"
    visual_contrast: float = 0.2
    audio_corrupt: float = 0.3
    audio_corruptions: tuple[str, ...] = ("noise", "silence")
    visual_corrupt: float = 0.0
    test_share: float = 0.2          # rq synth --val-fraction: the raw val/ folder, which becomes the test split
    # preprocessing: small frames, audio as long as the clips (257 x 199 spectrograms), val = 20% of train
    frame_size: int = 64
    val_fraction: float = 0.2
    # training (tiny preset) and evaluation
    epochs: int = 30                 # the tiny preset's 4 are too few for the audio encoder from scratch
    max_steps_per_epoch: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    noise_levels: tuple[float, ...] = (0.0, 0.5, 1.0)
    noisy_fraction: float = 0.5
    # Loading in the training process, and one torch thread: measured on the 2-core machine, a loader
    # process respawned for each of an epoch's 3 passes cost more than it saved (0.9 vs 1.2-3.7 s per
    # epoch), and a second torch thread under other jobs' load made epochs 10x slower (15 vs 1.2 s).
    loader_workers: int = 0
    torch_threads: int = 1

    def synth(self) -> SynthSettings:
        return SynthSettings(preset="kinetics", clips=self.clips, classes=self.classes, seconds=self.seconds,
                             seed=0, size=parse_size(self.size), fps=self.fps,
                             audio_informative=self.audio_informative, visual_informative=self.visual_informative,
                             audio_noise=self.audio_noise, visual_noise=self.visual_noise,
                             visual_cue=self.visual_cue, visual_contrast=self.visual_contrast,
                             val_fraction=self.test_share, audio_corrupt=self.audio_corrupt,
                             audio_corruptions=self.audio_corruptions, visual_corrupt=self.visual_corrupt).resolved()


@dataclass
class StageLog:
    """What each demo stage did, for the closing table."""
    rows: list[list]

    def add(self, stage: str, action: str, why: str, started: float) -> None:
        self.rows.append([stage, action, why, round(time.perf_counter() - started, 1)])
        console.print(f"[demo] {stage}: {action} ({why})", markup=False)


def make_demo(out: Path, settings: DemoSettings = DemoSettings(), workers: int | None = None) -> dict:
    """Run (or reuse) every stage into `out`; returns {"report": Report, "stages": rows, "seconds": total}."""
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    try:
        return _make_demo(Path(out).absolute(), settings, workers)
    finally:
        torch.set_num_threads(threads)


def _make_demo(out: Path, settings: DemoSettings, workers: int | None) -> dict:
    started, load_before = time.perf_counter(), os.getloadavg()
    if out.exists() and not out.is_dir():
        fail(f"{out}: --out is a file, not a folder")
    raw, shards, runs, report_dir = out / "raw", out / "shards", out / "runs", out / "report"
    log = StageLog([])
    _synth(raw, settings, workers, log)
    _preprocess(raw, shards, settings, workers, log)
    sha = hashlib.sha256((shards / "manifest.json").read_bytes()).hexdigest()
    frames = json.loads((shards / "manifest.json").read_text())["frames_per_clip"]
    for method in METHODS:
        for cfg in _train_configs(runs / method, shards, method, frames, settings):
            retrained = _train(cfg, sha, log)
            _eval(Path(cfg.out), shards, sha, settings, retrained, log)
    t = time.perf_counter()
    try:
        report = write_report([runs / m for m in METHODS], report_dir)
    except ReportError as e:
        fail(str(e), code=1)
    log.add("report", "written", "always redrawn", t)
    total = time.perf_counter() - started
    summary_table(f"rq demo: stages ({total:.0f} s in all)", ["stage", "action", "why", "seconds"], log.rows)
    show(report)
    corrupted = corrupted_sound_test(raw / "synth.json", runs, settings.seeds)
    for line in corrupted:
        console.print(line, markup=False)
    with open(report.path, "a", encoding="utf-8") as page:   # the demo's own test, below rq report's page
        page.write("\n## Corrupted sound (rq demo)\n\n" + "".join(f"- {line}\n" for line in corrupted))
    machine = (f"{len(os.sched_getaffinity(0))} cores ({platform.processor() or platform.machine()}), "
               f"load average {load_before[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    console.print(f"rq demo: {total:.0f} s on {machine}", markup=False)
    return {"report": report, "stages": log.rows, "seconds": total, "machine": machine}


def _synth(raw: Path, settings: DemoSettings, workers: int | None, log: StageLog) -> None:
    t = time.perf_counter()
    wanted = json.loads(json.dumps(asdict(settings.synth())))  # as synth.json stores it (tuples -> lists)
    listing = raw / "synth.json"
    why = "no earlier dataset"
    if listing.is_file():
        earlier = json.loads(listing.read_text(encoding="utf-8"))
        changed = [k for k in wanted if earlier.get("settings", {}).get(k) != wanted[k]]
        missing = [c["video"] for c in earlier.get("clips", []) if not (raw / c["video"]).is_file()]
        if not changed and not missing and len(earlier.get("clips", [])) == settings.clips:
            return log.add("synth", "reused", f"all {settings.clips} clips, same settings (synth.json)", t)
        why = (f"settings changed: {', '.join(changed)}" if changed else
               f"{len(missing)} clip(s) missing" if missing else "an earlier run left clips out")
    options = {f.name: getattr(settings.synth(), f.name) for f in fields(SynthSettings)}
    options.update(out=raw, size=settings.size, workers=workers, force=listing.is_file())
    try:
        cli_synth(options)
    except SystemExit as e:
        if e.code != 1 or not listing.is_file():
            raise
        why += "; some clips failed (listed above), the demo goes on without them"
    log.add("synth", "generated", why, t)


def _preprocess(raw: Path, shards: Path, settings: DemoSettings, workers: int | None, log: StageLog) -> None:
    t = time.perf_counter()
    manifest = shards / "manifest.json"
    before = manifest.read_bytes() if manifest.is_file() else None
    # The class list is cut to the generated classes by rq preprocess itself (the classes with clips).
    preprocess("kinetics", raw=raw, out=shards, frame_size=settings.frame_size, audio_seconds=settings.seconds,
               val_fraction=settings.val_fraction, workers=workers, seed=0)
    same = before is not None and manifest.read_bytes() == before
    log.add("preprocess", "reused" if same else "ran",
            "all cached, shards unchanged" if same else
            "counts in the Stages table", t)


def _train_configs(run_dir: Path, shards: Path, method: str, frames: int, settings: DemoSettings) -> list[TrainConfig]:
    """One config per seed, as `rq train --seeds` makes them (run_dir/seed<N>)."""
    cfg = TrainConfig.from_options(str(shards), "tiny", method=method, out=str(run_dir), epochs=settings.epochs,
                                   frames=frames, workers=settings.loader_workers,
                                   max_steps_per_epoch=settings.max_steps_per_epoch)
    return seed_runs(cfg, ",".join(map(str, settings.seeds)))


def _train(cfg: TrainConfig, sha: str, log: StageLog) -> bool:
    """Train (or reuse, or resume) one run; True when weights were (re)computed."""
    t = time.perf_counter()
    run_dir = Path(cfg.out)
    name = f"train {run_dir.parent.name}/{run_dir.name}"
    action, why = _train_plan(cfg, run_dir, sha)
    if action == "reuse":
        log.add(name, "reused", why, t)
        return False
    with cli_errors():
        fit(replace(cfg, resume=action == "resume"))
    log.add(name, "resumed" if action == "resume" else "trained", why, t)
    return True


def _train_plan(cfg: TrainConfig, run_dir: Path, sha: str) -> tuple[str, str]:
    """("reuse" | "resume" | "train", why)."""
    saved_path, last = run_dir / "config.json", run_dir / "last.pt"
    if not saved_path.is_file() or not last.is_file():
        return "train", "no earlier run"
    changed = TrainConfig.from_dict(json.loads(saved_path.read_text())).differences(cfg)
    if changed:
        return "train", "config changed: " + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
    state = load_checkpoint(last)
    if state.get("manifest_sha256") != sha:
        return "train", "the shards changed since it was trained"
    done = state["epoch"] + 1
    if done < cfg.epochs:
        return "resume", f"the earlier run stopped after {done} of {cfg.epochs} epochs"
    return "reuse", f"{done} epochs done, same config and shards"


def _eval(run_dir: Path, shards: Path, sha: str, settings: DemoSettings, retrained: bool, log: StageLog) -> None:
    t = time.perf_counter()
    ckpt, result = run_dir / "best.pt", run_dir / "eval" / "eval.json"
    ec = EvalConfig(ckpt=str(ckpt), shards=str(shards), noise_modality="audio", noise_levels=settings.noise_levels,
                    noisy_fraction=settings.noisy_fraction, out=str(result.parent), workers=settings.loader_workers,
                    seed=0)
    name = f"eval {run_dir.parent.name}/{run_dir.name}"
    if not retrained and result.is_file() and result.stat().st_mtime >= ckpt.stat().st_mtime:
        earlier = json.loads(result.read_text())
        same = (earlier.get("ckpt") == ec.ckpt and earlier.get("manifest_sha256") == sha
                and (earlier.get("noise") or {}).get("levels") == list(ec.noise_levels)
                and (earlier.get("pearson") or {}).get("fraction") == ec.noisy_fraction
                and (result.parent / str(earlier.get("per_sample"))).is_file())
        if same:
            return log.add(name, "reused", "eval.json newer than best.pt, same settings", t)
    with cli_errors():
        evaluate_checkpoint(ec)
    log.add(name, "ran", "new checkpoint" if retrained else "no matching eval.json", t)


def corrupted_sound_test(listing: Path, runs: Path, seeds: tuple[int, ...]) -> list[str]:
    """Does the fused attention leave sound that rq synth corrupted? Per run: Pearson r between the fused
    CLS attention share on visual (clean test pass, per_sample.json) and 'this clip's sound is corrupted'
    (synth.json); r > 0 = attention moves to the picture when the sound is bad. Then RollingQ vs Vanilla
    MT over seeds. This reads the generator's record, so only the demo can make it."""
    clips = json.loads(listing.read_text(encoding="utf-8"))["clips"]
    corrupted = {sample_key(Path(c["video"]).stem): int(bool(c["audio_corruption"])) for c in clips}
    r = {}
    for method in METHODS:
        r[method] = {}
        for seed in seeds:
            samples = json.loads((runs / method / f"seed{seed}" / "eval" / "per_sample.json").read_text())
            pairs = [(share, corrupted[k]) for k, share in zip(samples["keys"], samples["clean"].get("share_visual", []))
                     if k in corrupted and share is not None]
            value = pearson(*zip(*pairs))[0] if len(pairs) >= 3 else float("nan")
            if value == value:   # not nan: some test clips corrupted, attention not constant
                r[method][seed] = value
    n = sum(corrupted.get(k, 0) for k in samples["keys"])
    lines = [f"Corrupted sound (rq synth: {n} of the {len(samples['keys'])} test clips): Pearson r of the attention "
             "share on visual vs 'sound corrupted', > 0 = attention moves to the picture when the sound is bad: "
             + "; ".join(f"{m} {spread(list(v.values())).mean:+.3f} (seeds: "
                         + ", ".join(f"{x:+.3f}" for x in v.values()) + ")" for m, v in r.items() if v)]
    if all(len(v) >= 2 for v in r.values()):
        lines.append(better(over_seeds(r["rollingq"], r["mt"], "attention moving off corrupted sound (r)"),
                            "RollingQ", "Vanilla MT"))
    return lines


def cli_demo(out: Path, workers: int | None) -> None:
    if workers is not None and workers < 1:
        fail(f"--workers must be at least 1, not {workers}")
    make_demo(out, workers=workers)
