"""`rq synth`: a small dataset in the real raw layout of a recipe, drawn by ffmpeg's own sources.

Every class has a sound (a tone at its own pitch, pulsing at its own beat rate) and a picture (a box
of its own colour, shape and direction of motion on a grey background). Per clip and per modality,
the signal is the clip's own class with probability `*_informative`, otherwise a random other
class's, and noise of amplitude `*_noise` is added: so a model can learn either modality, and one
can be made to dominate. All randomness is drawn up front from `seed`; each clip is then one ffmpeg
call, run in a process pool, written to a temporary name and renamed into place."""
import colorsys
import csv
import json
import math
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import ffmpeg
import numpy as np

from rq.manifests import CREMAD_EMOTIONS, read_class_list

from rq.pipeline.console import err, fail, progress, summary_table
from rq.pipeline.errors import ClipError
from rq.pipeline.ffmpeg import FfmpegMissing, run_ffmpeg

PRESETS = ("kinetics", "cremad")
# The 12 CREMA-D sentences; only IEO was recorded at several intensity levels (LO/MD/HI), the rest XX.
CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_LISTING = "synth.json"   # what this module wrote into --out: settings and one row per clip


@dataclass(frozen=True)
class SynthSettings:
    preset: str = "kinetics"
    clips: int = 40                 # in all, spread evenly over the classes
    classes: int = 4
    seconds: float | None = None    # None: 10 (kinetics), 2.5 (cremad; each clip 80-120% of it)
    seed: int = 0
    size: tuple[int, int] | None = None   # None: 640x360 (kinetics), 480x360 (cremad)
    fps: float | None = None        # None: 25 (kinetics), 30 (cremad)
    audio_informative: float = 0.9
    visual_informative: float = 0.6
    audio_noise: float = 0.1
    visual_noise: float = 0.1
    # "colour": the box's colour, shape and motion all tell the class (a tiny model reads the colour in a
    # few steps); "motion": the colour is drawn at random per clip, so only shape and direction of motion
    # tell it: informative, but slower to learn than the class's tone.
    visual_cue: str = "colour"
    # How far the box's colour stands out from the grey background: 1 = the full colour, 0.1 = a faint
    # tint that a model finds only after many steps (noise then hides it further).
    visual_contrast: float = 1.0
    val_fraction: float = 0.2       # kinetics: share of each class in val/

    def resolved(self) -> "SynthSettings":
        """Preset defaults filled in, every value checked; ValueError names the bad option."""
        kinetics = self.preset == "kinetics"
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        s = replace(self, seconds=self.seconds or (10.0 if kinetics else 2.5),
                    size=self.size or ((640, 360) if kinetics else (480, 360)), fps=self.fps or (25 if kinetics else 30))
        available = len(read_class_list()) if kinetics else len(CREMAD_EMOTIONS)
        if not 1 <= s.classes <= available:
            raise ValueError(f"--classes must be 1..{available} for {s.preset}, not {s.classes}")
        if s.clips < 1:
            raise ValueError(f"--clips must be at least 1, not {s.clips}")
        if not kinetics and s.clips > 91 * len(CREMAD_SENTENCES) * s.classes:
            raise ValueError(f"--clips: CREMA-D names allow at most {91 * len(CREMAD_SENTENCES) * s.classes} clips")
        if not 0.1 <= s.seconds <= 600:
            raise ValueError(f"--seconds must be in 0.1..600, not {s.seconds}")
        if min(s.size) < 16 or any(v % 2 for v in s.size):
            raise ValueError(f"--size must be even numbers of at least 16 pixels, not {s.size[0]}x{s.size[1]}")
        if s.visual_cue not in ("colour", "motion"):
            raise ValueError(f"--visual-cue must be colour or motion, not {s.visual_cue!r}")
        for name in ("audio_informative", "visual_informative", "audio_noise", "visual_noise", "val_fraction",
                     "visual_contrast"):
            if not 0 <= getattr(s, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in 0..1, not {getattr(s, name)}")
        return s


@dataclass(frozen=True)
class ClipSpec:
    """One clip, fully decided: what the worker renders."""
    video: str                      # path relative to --out
    wav: str | None                 # cremad: the separate AudioWAV file
    split: str
    label: int
    audio_class: int                # whose sound it carries
    visual_class: int               # whose picture it carries
    seconds: float
    noise_seed: int
    pitch: float                    # per-clip jitter of the class's tone, x
    phase: float                    # where the box starts along its path, 0..1


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360); ValueError otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x360, not {text!r}") from None
    return w, h


def cli_synth(options: dict) -> None:
    """`rq synth`: validate (usage errors: one line, exit 2), plan, render in parallel, summarise."""
    options = dict(options)
    out, workers, force, size = (options.pop(k) for k in ("out", "workers", "force", "size"))
    if options["preset"] is None or out is None:
        fail("rq synth needs --preset (kinetics or cremad) and --out DIR")
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


def class_names(settings: SynthSettings) -> list[str]:
    return read_class_list()[: settings.classes] if settings.preset == "kinetics" else list(CREMAD_EMOTIONS[: settings.classes])


def plan(settings: SynthSettings) -> list[ClipSpec]:
    """Every clip's name, split, label and signals, drawn from one seeded generator in a fixed order."""
    rng = np.random.default_rng(settings.seed)
    labels = [i % settings.classes for i in range(settings.clips)]
    names = _kinetics_names(rng, settings, labels) if settings.preset == "kinetics" else _cremad_names(rng, settings, labels)
    specs = []
    for (video, wav, split), label in zip(names, labels):
        seconds = settings.seconds if settings.preset == "kinetics" else round(settings.seconds * rng.uniform(0.8, 1.2), 2)
        specs.append(ClipSpec(
            video=video, wav=wav, split=split, label=label,
            audio_class=_signal_class(rng, label, settings.classes, settings.audio_informative),
            visual_class=_signal_class(rng, label, settings.classes, settings.visual_informative),
            seconds=seconds, noise_seed=int(rng.integers(1, 2 ** 31 - 1)),
            pitch=float(rng.uniform(0.97, 1.03)), phase=float(rng.uniform(0, 1))))
    return specs


def _signal_class(rng: np.random.Generator, label: int, classes: int, informative: float) -> int:
    """The clip's own class with probability `informative`, else one of the other classes."""
    if classes == 1 or rng.uniform() < informative:
        return label
    return int((label + rng.integers(1, classes)) % classes)


def _kinetics_names(rng, settings: SynthSettings, labels: list[int]) -> list[tuple[str, None, str]]:
    """train/ or val/ + {youtube_id}_{start:06d}_{end:06d}.mp4; the last `val_fraction` of each class's
    clips (at least one of a class with two or more) go to val/."""
    total = Counter(labels)
    n_val = {c: max(int(n >= 2 and settings.val_fraction > 0), round(n * settings.val_fraction))
             for c, n in total.items()}
    seen: Counter = Counter()
    ids: set[str] = set()
    names = []
    for label in labels:
        seen[label] += 1
        split = "val" if seen[label] > total[label] - n_val[label] else "train"
        youtube_id = _youtube_id(rng, ids)
        start = int(rng.integers(0, 300))
        end = start + math.ceil(settings.seconds)
        names.append((f"{split}/{youtube_id}_{start:06d}_{end:06d}.mp4", None, split))
    return names


def _youtube_id(rng: np.random.Generator, taken: set[str]) -> str:
    """11 characters of YouTube's alphabet (a leading '-' included, as real ids have), unique."""
    while True:
        candidate = "".join(rng.choice(list(_ID_CHARS), 11))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _cremad_names(rng, settings: SynthSettings, labels: list[int]) -> list[tuple[str, str, str]]:
    """VideoFlash/{actor}_{sentence}_{EMO}_{level}.flv + AudioWAV/{same}.wav, each (actor, sentence,
    emotion) used once; the split is the recipe's business (seeded or by speaker), so it is '-' here."""
    per_emotion: Counter = Counter()
    names = []
    for label in labels:
        k = per_emotion[label]
        per_emotion[label] += 1
        actor = 1001 + k // len(CREMAD_SENTENCES)
        sentence = CREMAD_SENTENCES[(k + label) % len(CREMAD_SENTENCES)]
        level = str(rng.choice(["LO", "MD", "HI"])) if sentence == "IEO" else "XX"
        stem = f"{actor}_{sentence}_{CREMAD_EMOTIONS[label]}_{level}"
        names.append((f"VideoFlash/{stem}.flv", f"AudioWAV/{stem}.wav", "-"))
    return names


# ---- the signals ----

def class_tone(c: int) -> tuple[float, float]:
    """(pitch Hz, beat Hz) of class c. Pitches step through 250-7250 Hz by the golden ratio, so the
    first K classes are spread over the whole band whatever K is (neighbouring pitches would share a
    row of 16x16 spectrogram patches and be hard to tell apart); beats of 1-5 Hz."""
    return 250.0 + 7000.0 * ((c * 0.618034) % 1.0), 1.0 + c % 5


def class_picture(c: int) -> dict:
    """Colour (hue by the golden angle, so neighbours differ), box shape and direction of class c."""
    r, g, b = colorsys.hsv_to_rgb((c * 0.618034) % 1.0, 0.9, 0.95)
    return {"color": f"0x{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}",
            "shape": ((0.35, 0.35), (0.5, 0.22), (0.22, 0.5))[c % 3],
            "direction": ("right", "left", "down", "up")[(c // 3) % 4]}


def _video(spec: ClipSpec, settings: SynthSettings):
    w, h = settings.size
    look = class_picture(spec.visual_class)
    colour = look["color"] if settings.visual_cue == "colour" else class_picture(spec.noise_seed % 31)["color"]
    colour = _toward_background(colour, settings.visual_contrast)
    bw, bh = (max(2, round(w * look["shape"][0])), max(2, round(h * look["shape"][1])))
    # one pass along the path per 4 s, starting at a per-clip phase
    along = f"mod({spec.phase}+t/4,1)"
    x, y = {"right": (f"(W-w)*{along}", "(H-h)/2"), "left": (f"(W-w)*(1-{along})", "(H-h)/2"),
            "down": ("(W-w)/2", f"(H-h)*{along}"), "up": ("(W-w)/2", f"(H-h)*(1-{along})")}[look["direction"]]
    timing = f"r={settings.fps}:d={spec.seconds}"
    background = ffmpeg.input(f"color=c=0x404040:s={w}x{h}:{timing}", f="lavfi")
    box = ffmpeg.input(f"color=c={colour}:s={bw}x{bh}:{timing}", f="lavfi")
    picture = ffmpeg.overlay(background, box, x=x, y=y, eof_action="pass")
    if settings.visual_noise > 0:
        picture = picture.filter("noise", alls=round(settings.visual_noise * 100), allf="t",
                                 all_seed=spec.noise_seed)
    return picture.filter("format", "yuv420p")


def _toward_background(colour: str, contrast: float) -> str:
    """`colour` (0xRRGGBB) moved toward the background grey 0x404040, keeping `contrast` of the difference."""
    rgb = int(colour[2:], 16)
    channels = [(rgb >> shift) & 255 for shift in (16, 8, 0)]
    return "0x" + "".join(f"{round(0x40 + contrast * (c - 0x40)):02x}" for c in channels)


def _audio(spec: ClipSpec, settings: SynthSettings, rate: int):
    """The class's pulsing tone plus white noise, as one aevalsrc input. Kept out of the filter graph on
    purpose: with audio and video in one -filter_complex, ffmpeg 9 hung on about 1 call in 100."""
    pitch, beat = class_tone(spec.audio_class)
    sound = f"0.5*sin(2*PI*{pitch * spec.pitch:.3f}*t)*(0.6+0.4*sin(2*PI*{beat:g}*t))"
    if settings.audio_noise > 0:
        # seeded, stateless noise: the fractional part of a hash of the sample index n
        h = f"sin(n*12.9898+{spec.noise_seed % 100000})*43758.5453"
        sound += f"+{settings.audio_noise * 0.5:.4f}*(2*({h}-floor({h}))-1)"
    return ffmpeg.input(f"aevalsrc=exprs={sound}:s={rate}:d={spec.seconds}", f="lavfi")


def render_clip(spec: ClipSpec, settings: SynthSettings, out: Path) -> None:
    """One ffmpeg call writes the clip (and CREMA-D's wav) under temporary names, then both are renamed."""
    video_path = out / spec.video
    targets = [video_path] + ([out / spec.wav] if spec.wav else [])
    temps = [t.with_name(f".tmp-{t.name}") for t in targets]
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
    picture, sound = _video(spec, settings), _audio(spec, settings, 44100)
    # one encoder thread (parallelism is the pool's); bitexact: no encoder version strings in the files
    common = dict(threads=1, fflags="+bitexact", flags="+bitexact")
    if settings.preset == "kinetics":  # H.264/AAC stereo 44.1 kHz mp4, as Kinetics downloads
        # pixel noise is incompressible: cap the rate near real Kinetics 360p files (about 1 Mbit/s)
        outputs = [ffmpeg.output(picture, sound, f"file:{temps[0]}", vcodec="libx264", preset="veryfast", crf=23,
                                 maxrate="1M", bufsize="2M", acodec="aac", ac=2, **common, **{"b:a": "128k"})]
    else:  # CREMA-D: flv1 video + mp3 in the flv; the separate wav is 16 kHz mono 16-bit
        outputs = [ffmpeg.output(picture, sound, f"file:{temps[0]}", vcodec="flv", acodec="libmp3lame",
                                 ac=1, **common, **{"q:v": 3}),
                   ffmpeg.output(sound, f"file:{temps[1]}", acodec="pcm_s16le", ar=16000, ac=1, **common)]
    run_ffmpeg(ffmpeg.merge_outputs(*outputs).overwrite_output(), stage="synth",
               path=video_path, timeout=max(120.0, 20 * spec.seconds))
    for temp, target in zip(temps, targets):
        os.replace(temp, target)


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
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            with open(out / "annotations" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
                rows = csv.writer(f)
                rows.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
                for s in (s for s in written if s.split == split):
                    youtube_id, start, end = Path(s.video).stem.rsplit("_", 2)
                    rows.writerow([names[s.label], youtube_id, int(start), int(end), split])
    listing = {"settings": asdict(settings), "classes": names,
               "clips": [{**asdict(s), "label_name": names[s.label]} for s in written]}
    (out / _LISTING).write_text(json.dumps(listing, indent=1) + "\n", encoding="utf-8")


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
                     sum(s.audio_class == s.label for s in ok), sum(s.visual_class == s.label for s in ok)])
    done = len(specs) - len(failures)
    rows.append(["total", f"{len(names)} classes", done, round(sum(r[3] for r in rows), 1),
                 sum(r[4] for r in rows), sum(r[5] for r in rows)])
    summary_table(f"rq synth {settings.preset}: {done} clips in {out} ({elapsed:.1f} s, {done / elapsed:.2f} clips/s)"
                  + (f", {len(failures)} failed" if failures else ""),
                  ["split", "class", "clips", "seconds", "own sound", "own picture"], rows)
