"""`rq`: the command line. It only parses options and calls the packages that do the work."""
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="rq: raw audio-visual videos -> cached WebDataset shards -> RollingQ training.")
preprocess_app = typer.Typer(no_args_is_help=True, help="Turn a raw dataset folder into training shards.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of the input pipeline and training speed.")
app.add_typer(preprocess_app, name="preprocess")
app.add_typer(bench_app, name="bench")


# ---- doctor / synth (pipeline) ----


# ---- preprocess (pipeline) ----
_RAW = typer.Option(None, "--raw", help="The raw dataset folder, as downloaded (required).", show_default=False)
_OUT = typer.Option(None, "--out", help="Output folder: shards, manifest.json, clips.jsonl, failures.jsonl, .cache/ "
                    "(required).", show_default=False)
_CLASSES = typer.Option(None, "--classes", help="Class list file, one name per line; replaces the recipe's list "
                        "(clips of other classes are counted, not decoded).")
_SPLIT_LIST = typer.Option([], "--split-list", help="[SPLIT=]FILE, repeatable: the clips of a split, lines "
                           "`name,frames,label` or `name label`; SPLIT (train/test/val) is read from the file "
                           "name when not given. Replaces the recipe's own split.")
_SPLIT = typer.Option("clip", "--split", help="Seeded split unit when no --split-list: clip, or speaker (no actor "
                      "in both train and test).")
_TEST_FRACTION = typer.Option(0.1, "--test-fraction", help="Seeded split: share of clips (or speakers) in test.")
_FRAME_SIZE = typer.Option(256, "--frame-size", help="Short side of the JPEG frames in pixels; 0 keeps the size.")
_JPEG_QUALITY = typer.Option(90, "--jpeg-quality", help="JPEG quality of the frames, 1-100.")
_SAMPLE_RATE = typer.Option(16000, "--sample-rate", help="Audio is decoded to mono float32 at this rate (Hz).")
_AUDIO_SECONDS = typer.Option(None, "--audio-seconds", help="Waveform length before the STFT [default: 10 for "
                              "kinetics and folder, 3 for cremad].", show_default=False)
_AUDIO_PAD = typer.Option("repeat", "--audio-pad", help="Shorter audio: repeat it (the official code) or zero-pad.")
_MISSING_AUDIO = typer.Option("skip", "--missing-audio", help="A clip with no audio stream: skip (recorded in "
                              "failures.jsonl) or silence (kept with a silent spectrogram).")
_N_FFT = typer.Option(512, "--n-fft", help="STFT size (and Hann window length); gives n_fft/2+1 bins.")
_HOP = typer.Option(159, "--hop-length", help="STFT hop in samples (159 = overlap 353 of 512).")
_SHARD_SIZE = typer.Option(100.0, "--shard-size", help="Largest shard, in MB.")
_WORKERS = typer.Option(None, "--workers", help="Parallel clip workers, one ffmpeg thread each [default: all "
                        "cores].", show_default=False)
_SEED = typer.Option(0, "--seed", help="Seed of the sample order in the shards and of seeded splits.")
_TIMEOUT = typer.Option(120.0, "--timeout", help="Seconds one ffmpeg call may take before its clip is skipped.")
_MAX_FAILURE = typer.Option(0.05, "--max-failure-rate", help="Exit 1 when more than this share of clips is "
                            "skipped (the shards are written anyway).")
_CACHE = typer.Option(None, "--cache", help="Cache folder of per-(clip, stage) results [default: OUT/.cache].",
                      show_default=False)
_HASH = typer.Option(False, "--hash-content", help="Fingerprint inputs by size + sha256 of their bytes instead "
                     "of size + mtime (copied or touched files stay cached; reads every file once).")
_FORCE = typer.Option([], "--force", help="Recompute this stage even when cached, repeatable: probe, frames, "
                      "audio, spectrogram or all.")
_DRY_RUN = typer.Option(False, "--dry-run", help="Print per stage what would be computed and what is cached; "
                        "decode and write nothing.")
_FRAMES_PER_CLIP = typer.Option(None, "--frames-per-clip", help="Frames the trainer samples per clip, recorded "
                                "in the manifest [default: 3 for kinetics and folder, 1 for cremad].",
                                show_default=False)


def _preprocess(recipe: str, options: dict) -> None:
    from pipeline.preprocess import preprocess
    preprocess(recipe, **options)


@preprocess_app.command("kinetics")
def preprocess_kinetics(
        raw: Optional[Path] = _RAW, out: Optional[Path] = _OUT, classes: Optional[Path] = _CLASSES,
        split_list: list[str] = _SPLIT_LIST, frame_size: int = _FRAME_SIZE, jpeg_quality: int = _JPEG_QUALITY,
        sample_rate: int = _SAMPLE_RATE, audio_seconds: Optional[float] = _AUDIO_SECONDS,
        audio_pad: str = _AUDIO_PAD, missing_audio: str = _MISSING_AUDIO, n_fft: int = _N_FFT,
        hop_length: int = _HOP, shard_size: float = _SHARD_SIZE, workers: Optional[int] = _WORKERS,
        seed: int = _SEED, timeout: float = _TIMEOUT, max_failure_rate: float = _MAX_FAILURE,
        cache: Optional[Path] = _CACHE, hash_content: bool = _HASH, force: list[str] = _FORCE,
        dry_run: bool = _DRY_RUN, frames_per_clip: Optional[int] = _FRAMES_PER_CLIP) -> None:
    """Kinetics download (train/, val/ of {youtube_id}_{start:06d}_{end:06d}.mp4 + annotation CSVs) -> shards
    of the 31 Kinetics-Sounds classes; val becomes test."""
    _preprocess("kinetics", locals())


@preprocess_app.command("cremad")
def preprocess_cremad(
        raw: Optional[Path] = _RAW, out: Optional[Path] = _OUT, classes: Optional[Path] = _CLASSES,
        split_list: list[str] = _SPLIT_LIST, split: str = _SPLIT, test_fraction: float = _TEST_FRACTION,
        frame_size: int = _FRAME_SIZE, jpeg_quality: int = _JPEG_QUALITY, sample_rate: int = _SAMPLE_RATE,
        audio_seconds: Optional[float] = _AUDIO_SECONDS, audio_pad: str = _AUDIO_PAD,
        missing_audio: str = _MISSING_AUDIO, n_fft: int = _N_FFT, hop_length: int = _HOP,
        shard_size: float = _SHARD_SIZE, workers: Optional[int] = _WORKERS, seed: int = _SEED,
        timeout: float = _TIMEOUT, max_failure_rate: float = _MAX_FAILURE, cache: Optional[Path] = _CACHE,
        hash_content: bool = _HASH, force: list[str] = _FORCE, dry_run: bool = _DRY_RUN,
        frames_per_clip: Optional[int] = _FRAMES_PER_CLIP) -> None:
    """CREMA-D download (VideoFlash/*.flv for frames + AudioWAV/*.wav for audio, emotion = third name field)
    -> shards."""
    _preprocess("cremad", locals())


@preprocess_app.command("folder")
def preprocess_folder(
        raw: Optional[Path] = _RAW, out: Optional[Path] = _OUT, classes: Optional[Path] = _CLASSES,
        test_fraction: float = _TEST_FRACTION, frame_size: int = _FRAME_SIZE, jpeg_quality: int = _JPEG_QUALITY,
        sample_rate: int = _SAMPLE_RATE, audio_seconds: Optional[float] = _AUDIO_SECONDS,
        audio_pad: str = _AUDIO_PAD, missing_audio: str = _MISSING_AUDIO, n_fft: int = _N_FFT,
        hop_length: int = _HOP, shard_size: float = _SHARD_SIZE, workers: Optional[int] = _WORKERS,
        seed: int = _SEED, timeout: float = _TIMEOUT, max_failure_rate: float = _MAX_FAILURE,
        cache: Optional[Path] = _CACHE, hash_content: bool = _HASH, force: list[str] = _FORCE,
        dry_run: bool = _DRY_RUN, frames_per_clip: Optional[int] = _FRAMES_PER_CLIP) -> None:
    """A folder of class sub-folders, DIR/{split}/{class}/* or DIR/{class}/* (any container ffmpeg reads)
    -> shards."""
    _preprocess("folder", locals())


# ---- train / eval / bench (train) ----


@bench_app.command("loader")
def bench_loader_cmd(
    shards: str = typer.Option(..., help="Shards folder (with manifest.json) whose train split is read."),
    workers: int = typer.Option(2, help="DataLoader worker processes, the same for both pipelines."),
    batches: int = typer.Option(20, min=1, help="Batches timed per pipeline (after one warm-up batch)."),
    batch_size: int = typer.Option(64, min=1, help="Samples per batch."),
    frames: int = typer.Option(3, min=1, help="Frames sampled per clip."),
    image_size: int = typer.Option(224, min=8, help="Crop size in pixels."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result here as JSON."),
) -> None:
    """Samples/s of the streaming shard loader vs a per-clip-folder PIL DataLoader on the same clips."""
    from train.bench_loader import bench_loader
    bench_loader(shards, workers=workers, batches=batches, batch_size=batch_size, frames=frames,
                 image_size=image_size, json_path=json_path)


# ---- demo / report / predict ----


def main() -> None:
    app()


if __name__ == "__main__":
    main()
