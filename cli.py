"""`rq`: the command line. It only parses options and calls the packages that do the work."""
from pathlib import Path
from typing import Optional

import typer

from rq.train.trainer.config import default_text as _d   # light: no torch; the defaults are written there once

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="rq: raw audio-visual videos -> cached WebDataset shards -> RollingQ training.")
preprocess_app = typer.Typer(no_args_is_help=True, help="Turn a raw dataset folder into training shards.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of the input pipeline and training speed.")
app.add_typer(preprocess_app, name="preprocess")
app.add_typer(bench_app, name="bench")


# ---- doctor / synth (pipeline) ----
@app.command("doctor")
def doctor_cmd() -> None:
    """Print what rq runs with: the ffmpeg binary (path, version, and whether it came from $RQ_FFMPEG, PATH or
    the imageio-ffmpeg package), Python, torch, CUDA and its devices, CPU cores. Exit 1 when there is no ffmpeg."""
    from rq.pipeline.doctor import doctor
    doctor()


@app.command("synth")
def synth_cmd(
    preset: Optional[str] = typer.Option(None, "--preset", help="Raw layout to write: kinetics (train/, val/ "
                                         "*.mp4 H.264/AAC + annotations/*.csv) or cremad (VideoFlash/*.flv + "
                                         "AudioWAV/*.wav) (required).", show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write the dataset into; must be empty, or "
                                       "hold an earlier rq synth output with --force (required).", show_default=False),
    clips: int = typer.Option(40, "--clips", help="Clips in all, spread evenly over the classes."),
    classes: int = typer.Option(4, "--classes", help="Number of classes: the first K of the Kinetics-Sounds list "
                                "(at most 31) or of the CREMA-D emotions NEU HAP SAD FEA DIS ANG (at most 6)."),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Clip length in seconds [default: 10 for "
                                            "kinetics; 2.5 for cremad, each clip drawn within 80-120% of it].",
                                            show_default=False),
    seed: int = typer.Option(0, "--seed", help="Seed of everything random: names, splits, signals, noise. The "
                             "same seed and options write the same files."),
    size: Optional[str] = typer.Option(None, "--size", help="Frame size WxH, even numbers [default: 640x360 for "
                                       "kinetics, 480x360 for cremad].", show_default=False),
    fps: Optional[float] = typer.Option(None, "--fps", help="Video frame rate [default: 25 for kinetics, 30 for "
                                        "cremad].", show_default=False),
    audio_informative: float = typer.Option(0.9, "--audio-informative", help="Probability that a clip's sound "
                                            "is its own class's (otherwise another class's): 1 = audio alone "
                                            "predicts the label, 1/K = it carries no information."),
    visual_informative: float = typer.Option(0.6, "--visual-informative", help="Probability that a clip's "
                                             "picture is its own class's (otherwise another class's)."),
    audio_noise: float = typer.Option(0.1, "--audio-noise", help="Amplitude of white noise added to the sound, "
                                      "0-1 (the tone's amplitude is 0.5)."),
    visual_noise: float = typer.Option(0.1, "--visual-noise", help="Strength of temporal pixel noise added to "
                                       "the picture, 0-1 (1 = ffmpeg noise filter at 100)."),
    visual_cue: str = typer.Option("colour", "--visual-cue", help="colour: the box's colour, shape and motion "
                                   "tell the class; motion: its colour is random per clip, only shape and "
                                   "direction tell it (slower for a model to learn)."),
    visual_contrast: float = typer.Option(1.0, "--visual-contrast", help="How far the box's colour stands out "
                                          "from the grey background, 0-1 (1 = full colour; lower = harder to see)."),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="kinetics: share of each class's clips "
                                       "written to val/ (cremad has no split in its raw layout)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Clips rendered in parallel, one ffmpeg each "
                                          "[default: all cores].", show_default=False),
    force: bool = typer.Option(False, "--force", help="Replace an earlier rq synth output in --out (only the "
                               "files its synth.json lists are deleted)."),
) -> None:
    """Write a small synthetic dataset in the real raw layout of a recipe, drawn by ffmpeg's own sources: each
    class has its own sound (tone pitch and beat) and picture (box colour, shape, motion), with knobs for how
    informative and how noisy each modality is. Ends with a table of clips per split and class."""
    _synth(locals())


def _synth(options: dict) -> None:
    from rq.pipeline.synth import cli_synth
    cli_synth(options)



# ---- preprocess (pipeline) ----
# Defaults come from the settings classes, where each is written once.
from rq.pipeline.config import Options as _PO, PreprocessConfig as _PC, RecipeSettings as _RS  # noqa: E402
from rq.pipeline.stages.settings import (AudioDecodeSettings as _AS, FrameSettings as _FS,  # noqa: E402
                                         SpectrogramSettings as _SS)
_RAW = typer.Option(None, "--raw", help="The raw dataset folder, as downloaded (required).", show_default=False)
_OUT = typer.Option(None, "--out", help="Output folder: shards, manifest.json, clips.jsonl, failures.jsonl, .cache/ "
                    "(required).", show_default=False)
_CLASSES = typer.Option(None, "--classes", help="Class list file, one name per line; replaces the recipe's list "
                        "(clips of other classes are counted, not decoded).")
_SPLIT_LIST = typer.Option([], "--split-list", help="[SPLIT=]FILE, repeatable: the clips of a split, lines "
                           "`name,frames,label` or `name label`; SPLIT (train/test/val) is read from the file "
                           "name when not given. Replaces the recipe's own split.")
_SPLIT = typer.Option(_RS.split, "--split", help="Seeded split unit when no --split-list: clip, or speaker (no actor "
                      "in both train and test).")
_TEST_FRACTION = typer.Option(_RS.test_fraction, "--test-fraction", help="Seeded split: share of clips (or speakers) in test.")
_FRAME_SIZE = typer.Option(_FS.frame_size, "--frame-size", help="Short side of the JPEG frames in pixels; 0 keeps the size.")
_JPEG_QUALITY = typer.Option(_FS.jpeg_quality, "--jpeg-quality", help="JPEG quality of the frames, 1-100.")
_SAMPLE_RATE = typer.Option(_AS.sample_rate, "--sample-rate", help="Audio is decoded to mono float32 at this rate (Hz).")
_AUDIO_SECONDS = typer.Option(None, "--audio-seconds", help="Waveform length before the STFT [default: 10 for "
                              "kinetics and folder, 3 for cremad].", show_default=False)
_AUDIO_PAD = typer.Option(_SS.audio_pad, "--audio-pad", help="Shorter audio: repeat it (the official code) or zero-pad.")
_MISSING_AUDIO = typer.Option(_AS.missing_audio, "--missing-audio", help="A clip with no audio stream: skip (recorded in "
                              "failures.jsonl) or silence (kept with a silent spectrogram).")
_N_FFT = typer.Option(_SS.n_fft, "--n-fft", help="STFT size (and Hann window length); gives n_fft/2+1 bins.")
_HOP = typer.Option(_SS.hop_length, "--hop-length", help="STFT hop in samples (159 = overlap 353 of 512).")
_SHARD_SIZE = typer.Option(_PC.shard_size_mb, "--shard-size", help="Largest shard, in MB.")
_WORKERS = typer.Option(None, "--workers", help="Parallel clip workers, one ffmpeg thread each [default: all "
                        "cores].", show_default=False)
_SEED = typer.Option(_PC.seed, "--seed", help="Seed of the sample order in the shards and of seeded splits.")
_TIMEOUT = typer.Option(_PO.timeout, "--timeout", help="Seconds one ffmpeg call may take before its clip is skipped.")
_MAX_FAILURE = typer.Option(_PO.max_failure_rate, "--max-failure-rate", help="Exit 1 when more than this share of clips is "
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
    from rq.pipeline.preprocess import preprocess
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


@app.command("train")
def train_cmd(
    shards: str = typer.Option(..., help="Shards folder written by `rq preprocess` (reads its manifest.json), "
                                "or shard URL patterns joined by '::'."),
    manifest: Optional[str] = typer.Option(None, help="A local copy of the shards' manifest.json, for URL "
                                           "patterns with none beside them (e.g. pipe: commands)."),
    preset: str = typer.Option("ks", help="ks | cremad (the paper's model and settings) | tiny (small model, "
                               "64 px frames, batch 16, 4 epochs, AdamW lr 1e-3: CPU runs, tests, the demo)."),
    method: Optional[str] = typer.Option(None, help="rollingq (default) | mt (Vanilla MT) | concat | "
                                         "unimodal-audio | unimodal-visual."),
    out: Optional[Path] = typer.Option(None, help="Run folder [default: a new runs/<time>-<method>]."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last.pt (same final weights as "
                                "an uninterrupted run); its config.json wins over other options."),
    optimizer: Optional[str] = typer.Option(None, help=f"sgd (the paper) | adamw [{_d('optimizer')}]."),
    epochs: Optional[int] = typer.Option(None, help=f"Epochs [{_d('epochs')}]."),
    lr: Optional[float] = typer.Option(None, help=f"Peak learning rate [{_d('lr')}]."),
    batch_size: Optional[int] = typer.Option(None, help=f"Batch per process [{_d('batch_size')}]."),
    momentum: Optional[float] = typer.Option(None, help=f"SGD momentum [{_d('momentum')}]; not used by adamw."),
    weight_decay: Optional[float] = typer.Option(None, help=f"Weight decay [{_d('weight_decay')}]."),
    warmup_epochs: Optional[float] = typer.Option(None, help="Linear warm-up before the cosine decay, in epochs "
                                                  f"[{_d('warmup_epochs')}]."),
    grad_clip: Optional[float] = typer.Option(None, help=f"Max gradient norm; 0 = no clipping [{_d('grad_clip')}]."),
    frames: Optional[int] = typer.Option(None, help="Frames per clip [the manifest's frames_per_clip]."),
    image_size: Optional[int] = typer.Option(None, help=f"Frame crop size in pixels [{_d('image_size')}]."),
    workers: Optional[int] = typer.Option(None, help=f"Loader worker processes per GPU/process [{_d('workers')}]."),
    shuffle_buffer: Optional[int] = typer.Option(None, help=f"Samples in the shuffle buffer [{_d('shuffle_buffer')}]."),
    max_steps_per_epoch: Optional[int] = typer.Option(None, help="Cap on steps per epoch (smoke tests); 0 = none."),
    fusion_layers: Optional[int] = typer.Option(None, help=f"Fusion attention layers: 1 = Vanilla MT, 2 = MT* [{_d('fusion_layers')}]."),
    pretrained: Optional[Path] = typer.Option(None, help="Local timm ViT-B/16 checkpoint (.safetensors/.npz/.pth) "
                                              "for both encoders; never downloaded."),
    rq_rho: Optional[float] = typer.Option(None, help=f"RollingQ rho (official `sigma`): how hard the anchor leans [{_d('rq_rho')}]."),
    rq_beta: Optional[float] = typer.Option(None, help=f"RollingQ rotates when |AIR| > beta [{_d('rq_beta')}]."),
    rq_max_rotations: Optional[int] = typer.Option(None, help=f"RollingQ rotations at most (official `r_time`) [{_d('rq_max_rotations')}]."),
    rq_stats: Optional[str] = typer.Option(None, help="running (means gathered while training) | pass (the paper: "
                                           f"an extra forward pass over the training set) [{_d('rq_stats')}]."),
    rq_rotation: Optional[str] = typer.Option(None, help=f"svd (the paper) | minimal (plane rotation) [{_d('rq_rotation')}]."),
    rq_air_scope: Optional[str] = typer.Option(None, help=f"epoch (AIR over the epoch) | last-batch (official) [{_d('rq_air_scope')}]."),
    seed: Optional[int] = typer.Option(None, help=f"Seed of model init, shuffles and crops [{_d('seed')}]."),
    device: Optional[str] = typer.Option(None, help=f"auto | cpu | cuda | cuda:N [{_d('device')}]."),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32."),
    compile: bool = typer.Option(False, help="torch.compile the model."),
    stop_after: Optional[int] = typer.Option(None, help="End this invocation after N epochs (time-limited jobs); "
                                             "`--resume` continues the run."),
) -> None:
    """Train on shards (one process, or `torchrun --nproc-per-node N $(which rq) train ...` for DDP).
    Writes config.json, metrics.jsonl, tb/, last.pt (every epoch) and best.pt into the run folder."""
    options = locals()  # the parsed options, taken before the import below adds a name
    from rq.train.trainer.fit import cli_train
    cli_train(**options)


@app.command("eval")
def eval_cmd(
    ckpt: Path = typer.Option(..., help="Checkpoint (last.pt / best.pt) of `rq train`."),
    shards: str = typer.Option(..., help="Shards folder (or URL patterns) with the split to evaluate."),
    manifest: Optional[str] = typer.Option(None, help="A local copy of the shards' manifest.json, for URL "
                                           "patterns with none beside them (e.g. pipe: commands)."),
    split: str = typer.Option("test", help="Split to evaluate."),
    noise_modality: Optional[str] = typer.Option(None, help="audio | visual: run the noise sweep on this modality."),
    noise_levels: str = typer.Option("0,0.25,0.5,0.75,1", help="Noise levels: x + level * σ * N(0,1) on the "
                                     "normalised input, σ its standard deviation over the split."),
    noisy_fraction: float = typer.Option(0.0, help="Pearson test: perturb this seeded random fraction of samples "
                                         "(e.g. 0.5) and correlate attention with 'is noisy'; 0 = off."),
    noisy_level: float = typer.Option(1.0, help="Noise level of the Pearson test's perturbed samples."),
    out: Optional[Path] = typer.Option(None, help="Output folder for eval.json and the plots "
                                       "[default: <checkpoint folder>/eval]."),
    workers: int = typer.Option(2, min=0, help="Loader worker processes."),
    seed: int = typer.Option(0, help="Seed of the noise and of the noisy-sample choice."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
) -> None:
    """Accuracy (fused, audio probe, visual probe), macro-F1, AIR and attention shares of a checkpoint;
    optional noise sweep (the paper's Table 3) and noisy-fraction Pearson test (Table 2)."""
    options = locals()  # the parsed options, taken before the import below adds a name
    from rq.train.evaluation.evaluate import cli_eval
    cli_eval(**options)


@bench_app.command("train")
def bench_train_cmd(
    preset: str = typer.Option("tiny", help="tiny | ks | cremad: the model and input shapes to time."),
    method: str = typer.Option("rollingq", help="The method whose samples/s is the headline; mt and rollingq are "
                               "always both timed, for RollingQ's overhead."),
    steps: int = typer.Option(20, min=1, help="Timed training steps per method (after warm-up)."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size [the preset's]."),
    spec_frames: Optional[int] = typer.Option(None, help="Spectrogram width T [the preset's: 1004 for ks/tiny]."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    precision: str = typer.Option("auto", help="auto (bf16 on CUDA) | bf16 | fp32."),
    compile: bool = typer.Option(False, help="torch.compile both models."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result here as JSON."),
) -> None:
    """Training samples/s on synthetic in-memory batches (no loader) and RollingQ's per-step overhead."""
    options = locals()  # the parsed options, taken before the import below adds a name
    from rq.train.bench.training import cli_bench_train
    cli_bench_train(**options)


@bench_app.command("loader")
def bench_loader_cmd(
    shards: str = typer.Option(..., help="Shards folder (with manifest.json) whose train split is read."),
    workers: int = typer.Option(2, help="DataLoader worker processes, the same for both pipelines."),
    batches: int = typer.Option(20, min=1, help="Batches timed per pipeline (after one warm-up batch)."),
    batch_size: int = typer.Option(64, min=1, help="Samples per batch."),
    frames: int = typer.Option(3, min=1, help="Frames sampled per clip."),
    image_size: int = typer.Option(224, min=8, help="Crop size in pixels."),
    rounds: int = typer.Option(3, min=1, help="Rounds, pipelines taking turns; each reports its median."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result here as JSON."),
) -> None:
    """Samples/s of the streaming shard loader vs a per-clip-folder PIL DataLoader on the same clips."""
    from rq.train.bench.loader import bench_loader
    bench_loader(shards, workers=workers, batches=batches, batch_size=batch_size, frames=frames,
                 image_size=image_size, rounds=rounds, json_path=json_path)


# ---- demo / report / predict ----
@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for everything the demo makes: raw/ (generated "
                             "clips), shards/, runs/mt, runs/rollingq, report/. A rerun reuses what did not change."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Parallel clips in synth and preprocess "
                                          "[default: all cores].", show_default=False),
) -> None:
    """The whole product on generated data (a few minutes on a 2-core CPU): rq synth -> rq preprocess kinetics ->
    rq train (Vanilla MT and RollingQ, tiny preset, same seed) -> rq eval (audio-noise sweep, Pearson test) ->
    rq report. Prints the final table and where the report is."""
    from rq.train.demo import cli_demo
    cli_demo(out, workers)


@app.command("report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(None, help="Run folders of rq train (config.json, metrics.jsonl; "
                                          "eval/eval.json of rq eval when present).", show_default=False),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for report.md and the PNGs it embeds."),
    eval_paths: list[Path] = typer.Option([], "--eval", help="eval.json of the i-th run, in run order, when rq "
                                          "eval wrote it elsewhere than RUN_DIR/eval/eval.json (repeatable)."),
) -> None:
    """Compare runs side by side on one Markdown page: accuracy (fused, audio probe, visual probe), AIR per epoch
    with rotations, attention shares, accuracy and attention vs audio noise, Pearson test, training speed."""
    from rq.train.report.page import cli_report
    cli_report(run_dirs or [], out, eval_paths)


@app.command("predict")
def predict_cmd(
    videos: list[Path] = typer.Argument(None, help="Raw video files (any container ffmpeg reads).",
                                        show_default=False),
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="last.pt or best.pt of rq train (required).",
                                        show_default=False),
    top: int = typer.Option(5, "--top", help="Classes shown per video, most probable first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (predictions and errors) instead of a table."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds one ffmpeg call may take per video."),
) -> None:
    """Top classes and the fused CLS attention share on audio vs visual for raw videos, through the same
    per-clip frame and spectrogram code as rq preprocess (settings of the checkpoint's shards). A bad video is
    one line on stderr; exit 0 if any video got a prediction, 1 if none did, 2 on usage errors."""
    from rq.train.evaluation.predict import cli_predict
    cli_predict(ckpt, videos or [], top, as_json, device, timeout)



def main(argv: Optional[list[str]] = None) -> None:
    """Entry point. Usage errors print one line (not click's box) and exit 2."""
    from rq.pipeline.console import err, fail
    try:
        from typer._click import exceptions as click  # typer >= 0.2x carries its own click
    except ImportError:
        import click.exceptions as click

    try:
        code = app(args=argv, standalone_mode=False)
    except click.NoArgsIsHelpError as e:
        err.print(e.ctx.get_help(), markup=False)
        raise SystemExit(2)
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx else "rq"
        fail(f"{e.format_message()} (see `{where} --help`)")
    except click.ClickException as e:
        fail(e.format_message(), e.exit_code)
    except typer.Abort:
        fail("aborted", 1)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
