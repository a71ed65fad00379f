"""The commands of preprocessing: `rq doctor`, `rq synth`, `rq preprocess RECIPE`. Each only parses its
options (defaults from the settings classes, where each is written once) and calls the function that
does the work."""
from pathlib import Path
from typing import Optional

import typer

from rq.pipeline.commandline import app, command, preprocess_app
from rq.pipeline.config import Options as _PO, PreprocessConfig as _PC, RecipeSettings as _RS
from rq.pipeline.stages.frontends import DEFAULT_RATE as _RATE
from rq.pipeline.stages.settings import AudioDecodeSettings as _AS, FrameSettings as _FS, SpectrogramSettings as _SS


# ---- doctor / synth (pipeline) ----
@command(app, "doctor")
def doctor_cmd(
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Also join this Ray cluster (auto, or "
                                              "HOST:PORT of its head) and list its nodes and CPUs.",
                                              show_default=False),
) -> None:
    """Print what rq runs with: the ffmpeg binary (path, version, and whether it came from $RQ_FFMPEG, PATH or
    the imageio-ffmpeg package), Python, torch, CUDA and its devices, CPU cores, Ray. Exit 1 when there is no
    ffmpeg, or the Ray cluster of --ray-address cannot be joined."""
    from rq.pipeline.doctor import doctor
    doctor(ray_address)


@command(app, "synth")
def synth_cmd(
    preset: Optional[str] = typer.Option(None, "--preset", help="Raw layout to write: kinetics (train/, val/ "
                                         "*.mp4 H.264/AAC + annotations/*.csv), cremad (VideoFlash/*.flv + "
                                         "AudioWAV/*.wav) or mosei (the SDK's CMU-MOSEI .csd files: segments of "
                                         "word vectors, FACET and COVAREP rows, labels) (required).",
                                         show_default=False),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write the dataset into; must be empty, or "
                                       "hold an earlier rq synth output with --force (required).", show_default=False),
    clips: int = typer.Option(40, "--clips", help="Clips in all, spread evenly over the classes (mosei: labelled "
                              "segments, 4 per video)."),
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
    audio_corrupt: float = typer.Option(0.0, "--audio-corrupt", help="Share of clips whose sound is corrupted "
                                        "(exactly round(f x clips) in each split; kinds: --audio-corruption)."),
    audio_corruptions: str = typer.Option("noise", "--audio-corruption", help="Kinds of audio corruption, "
                                          "comma-separated, one drawn per corrupted clip: noise (white noise in "
                                          "place of the tone, as loud), silence."),
    visual_corrupt: float = typer.Option(0.0, "--visual-corrupt", help="Share of clips whose picture is "
                                         "corrupted (never a clip whose sound is: audio + visual <= 1); mosei: "
                                         "of segments whose FACET rows are louder noise with no signal."),
    visual_corruptions: str = typer.Option("occlusion", "--visual-corruption", help="Kinds of picture "
                                           "corruption, comma-separated: blur (shape and motion smeared, the "
                                           "colour stays), occlusion (the middle 80% covered), noise (full-"
                                           "strength pixel noise)."),
    text_informative: float = typer.Option(0.9, "--text-informative", help="mosei: probability that a segment's "
                                           "word vectors show its own class (--visual-informative: its FACET rows)."),
    text_corrupt: float = typer.Option(0.0, "--text-corrupt", help="mosei: share of segments whose word vectors "
                                       "are louder noise with no signal (never both modalities of one segment)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Clips rendered in parallel, one ffmpeg each "
                                          "[default: all cores].", show_default=False),
    force: bool = typer.Option(False, "--force", help="Replace an earlier rq synth output in --out (only the "
                               "files its synth.json lists are deleted)."),
) -> None:
    """Write a small synthetic dataset in the real raw layout of a recipe, drawn by ffmpeg's own sources: each
    class has its own sound (tone pitch and beat) and picture (box colour, shape, motion), with knobs for how
    informative and how noisy each modality is, and for the share of clips whose sound or picture is corrupted.
    Ends with a table of clips per split and class."""
    _synth(locals())


def _synth(options: dict) -> None:
    from rq.pipeline.synth import cli_synth
    cli_synth(options)



# ---- preprocess (pipeline) ----
_RAW = typer.Option(None, "--raw", help="The raw dataset folder, as downloaded (required).", show_default=False)
_OUT = typer.Option(None, "--out", help="Output folder: shards, manifest.json, clips.jsonl, failures.jsonl, .cache/ "
                    "(required).", show_default=False)
_CLASSES = typer.Option(None, "--classes", help="Class list file, one name per line; replaces the recipe's list "
                        "(clips of other classes are counted, not decoded).")
_SPLIT_LIST = typer.Option([], "--split-list", help="[SPLIT=]FILE, repeatable: the clips of a split, lines "
                           "`name,frames,label` or `name label`; SPLIT (train/val/test) is read from the file "
                           "name when not given. Replaces the recipe's own split; without a val list, val is "
                           "carved out of train.")
_SPLIT = typer.Option(_RS.split, "--split", help="Seeded split unit when no --split-list: clip, or speaker (no actor "
                      "in both train and test).")
_TEST_FRACTION = typer.Option(_RS.test_fraction, "--test-fraction", help="Seeded split: share of clips (or speakers) in test.")
_VAL_FRACTION = typer.Option(_RS.val_fraction, "--val-fraction", help="Share of the train clips moved to the val "
                             "split (model selection), seeded: exactly round(f x n) per class, or of the actors "
                             "under --split speaker; 0 = no val split. Kinetics' raw val/ folder stays the test split.")
_FRAME_SIZE = typer.Option(_FS.frame_size, "--frame-size", help="Short side of the JPEG frames in pixels; 0 keeps the size.")
_FRAME_DECODE = typer.Option(_FS.frame_decode, "--frame-decode", help="exact: decode every frame, keep the one "
                             "shown at each 1/fps second. fast: decode only reference frames (B-frames and the loop "
                             "filter skipped), keep the one nearest to each second (within half the distance between "
                             "reference frames: 0.08 s with 3 B-frames at 25 fps; never over 0.2 s: a clip whose "
                             "reference frames are sparser, e.g. x265's HEVC, is decoded exactly); each frame's real "
                             "time is in the sample's json either way. Faster for codecs with B-frames whose decoder "
                             "can skip them: H.264 (e.g. Kinetics' mp4s), MPEG-2, MPEG-4 Part 2; VP8/VP9/AV1 and "
                             "intra-only video decode as in exact.")
_JPEG_QUALITY = typer.Option(_FS.jpeg_quality, "--jpeg-quality", help="JPEG quality of the frames, 1-100.")
_FRAME_TIMES = typer.Option(_FS.times, "--frame-times", help="start: the frames shown at t = 0, 1, 2, ... s; "
                            "middle: the last frame before t = 0.5, 1.5, ... s (ffmpeg's default fps rounding, "
                            "as the released code's Kinetics-Sounds frames).")
_AUDIO_FEATURES = typer.Option(
    _SS.audio_features, "--audio-features", help="Audio front end; sets the defaults of --sample-rate and "
    "--audio-seconds. stft: the paper's text, log|STFT| (Hann 512, hop 159, no centring) at 16 kHz -> 257x1004 "
    "(10 s) or 257x299 (3 s). cremad-official: the released code's CREMA-D input, 22,050 Hz tiled and cut to "
    "3 s, clipped to +-1, centred STFT n_fft 512 hop 353 -> 257x188. ks-fbank: the released code's "
    "Kinetics-Sounds input, Kaldi log-mel filter bank of the whole 16 kHz waveform (128 bins, 25 ms Hann, "
    "10 ms shift), cut or zero-padded to 1024 frames, normalised -> 1024x128 (frames x bins).")
_SAMPLE_RATE = typer.Option(None, "--sample-rate", help="Audio is decoded to mono float32 at this rate (Hz) "
                            f"[default: {_RATE['stft']}; {_RATE['cremad-official']} with cremad-official].",
                            show_default=False)
_AUDIO_SECONDS = typer.Option(None, "--audio-seconds", help="Waveform length before the front end [default: 10 "
                              "for kinetics and folder, 3 for cremad and with cremad-official; ks-fbank: the "
                              "whole waveform].", show_default=False)
_AUDIO_PAD = typer.Option(_SS.audio_pad, "--audio-pad", help="Shorter audio: repeat it (the official code) or zero-pad.")
_MISSING_AUDIO = typer.Option(_AS.missing_audio, "--missing-audio", help="A clip with no audio stream: skip (recorded in "
                              "failures.jsonl) or silence (kept with a silent spectrogram).")
_N_FFT = typer.Option(None, "--n-fft", help="STFT size (and Hann window length) of --audio-features stft; gives "
                      f"n_fft/2+1 bins [default: {_SS.n_fft}].", show_default=False)
_HOP = typer.Option(None, "--hop-length", help="STFT hop in samples of --audio-features stft [default: "
                    f"{_SS.hop_length} = overlap 353 of 512].", show_default=False)
_SHARD_SIZE = typer.Option(_PC.shard_size_mb, "--shard-size", help="Largest shard, in MB.")
_WORKERS = typer.Option(None, "--workers", help="Parallel clip workers, one ffmpeg thread each [default: all "
                        "cores].", show_default=False)
_EXECUTOR = typer.Option(_PO.executor, "--executor", help="Where clips run: process (worker processes on this "
                         "machine) or ray (Ray tasks; needs `pip install 'rq[ray]'`). With ray, --raw and the cache "
                         "(--cache, default OUT/.cache) must be on a filesystem that every node mounts at the same "
                         "path; each node is checked at start.")
_RAY_ADDRESS = typer.Option(None, "--ray-address", help="With --executor ray: join this running cluster (auto, or "
                            "HOST:PORT of its head) instead of starting a local Ray instance of --workers CPUs; "
                            "--workers then caps the clips running at once [default: every CPU of the cluster].",
                            show_default=False)
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


# Options every recipe takes (name -> (type, option)); each command adds its own.
_COMMON = {
    "raw": (Optional[Path], _RAW), "out": (Optional[Path], _OUT), "classes": (Optional[Path], _CLASSES),
    "frame_size": (int, _FRAME_SIZE), "jpeg_quality": (int, _JPEG_QUALITY), "frame_times": (str, _FRAME_TIMES),
    "frame_decode": (str, _FRAME_DECODE), "audio_features": (str, _AUDIO_FEATURES),
    "sample_rate": (Optional[int], _SAMPLE_RATE),
    "audio_seconds": (Optional[float], _AUDIO_SECONDS), "audio_pad": (str, _AUDIO_PAD),
    "missing_audio": (str, _MISSING_AUDIO), "n_fft": (Optional[int], _N_FFT), "hop_length": (Optional[int], _HOP),
    "shard_size": (float, _SHARD_SIZE), "workers": (Optional[int], _WORKERS), "seed": (int, _SEED),
    "timeout": (float, _TIMEOUT), "max_failure_rate": (float, _MAX_FAILURE), "cache": (Optional[Path], _CACHE),
    "hash_content": (bool, _HASH), "force": (list[str], _FORCE), "dry_run": (bool, _DRY_RUN),
    "frames_per_clip": (Optional[int], _FRAMES_PER_CLIP), "val_fraction": (float, _VAL_FRACTION),
    "executor": (str, _EXECUTOR), "ray_address": (Optional[str], _RAY_ADDRESS),
}
_SPLITS = {"split_list": (list[str], _SPLIT_LIST)}
_SEEDED = {"test_fraction": (float, _TEST_FRACTION)}


@command(preprocess_app, "kinetics", config_file=True, shared=_COMMON | _SPLITS)
def preprocess_kinetics(**options) -> None:
    """Kinetics download (train/, val/ of {youtube_id}_{start:06d}_{end:06d}.mp4 + annotation CSVs) -> shards
    of the Kinetics-Sounds classes that have clips; the val/ folder becomes test, val is carved out of train."""
    _preprocess("kinetics", options)


@command(preprocess_app, "cremad", config_file=True,
         shared=_COMMON | _SPLITS | _SEEDED | {"split": (str, _SPLIT)})
def preprocess_cremad(**options) -> None:
    """CREMA-D download (VideoFlash/*.flv for frames + AudioWAV/*.wav for audio, emotion = third name field)
    -> shards."""
    _preprocess("cremad", options)


@command(preprocess_app, "folder", config_file=True, shared=_COMMON | _SEEDED)
def preprocess_folder(**options) -> None:
    """A folder of class sub-folders, DIR/{split}/{class}/* or DIR/{class}/* (any container ffmpeg reads)
    -> shards."""
    _preprocess("folder", options)


_LABEL_FIELD = typer.Option(_RS.label_field, "--label-field", help="The field of each sample's json holding its "
                            "label (a.b reaches into nested objects).")
_WDS_RAW = typer.Option(None, "--raw", help="The tars: a brace pattern 'DIR/{00000..00009}.tar' or a folder of "
                        "*.tar (required).", show_default=False)


@command(preprocess_app, "wds", config_file=True,
         shared=_COMMON | _SEEDED | {"raw": (Optional[str], _WDS_RAW), "label_field": (str, _LABEL_FIELD)})
def preprocess_wds(**options) -> None:
    """WebDataset tars of video files plus json, as video2dataset writes them (KEY.mp4 + KEY.json) -> shards.
    Each video is copied once into the cache folder; labels come from --label-field."""
    _preprocess("wds", {**options, "raw": Path(options["raw"]) if options["raw"] else None})


_MOSEI_RAW = typer.Option(None, "--raw", help="A folder of the CMU-MultimodalSDK's CMU-MOSEI computational sequences "
                          "(CMU_MOSEI_Labels.csd, CMU_MOSEI_TimestampedWordVectors.csd, CMU_MOSEI_VisualFacet42.csd, "
                          "optionally CMU_MOSEI_COVAREP.csd), or MultiBench's mosei_senti_data.pkl / "
                          "mosei_senti_data_noalign.pkl (required).", show_default=False)
_STEPS = typer.Option(50, "--steps", help="Time steps per modality: word-aligned rows cut or zero-padded to this "
                      "many, the padding recorded as a mask.")
_BINARIZE = typer.Option("ge0", "--binarize", help="Positive sentiment: ge0 (score >= 0, BalanceBenchmark's rule, "
                         "whose preprocessing the RollingQ code points to) or gt0 (score > 0, MultiBench's).")
_FOLDS = typer.Option([], "--split-list", help="[SPLIT=]FILE, repeatable: the video ids of a split, one per line "
                      "(the SDK's standard folds); SPLIT (train/valid/test) read from the file name when not given.")
_MOSEI_TEST = typer.Option(0.2, "--test-fraction", help="Seeded split by video id: share of the videos in test.")
_MOSEI_VAL = typer.Option(0.1, "--val-fraction", help="Seeded split by video id: share of the other videos in val.")
_MOSEI_FORCE = typer.Option([], "--force", help="Recompute this stage even when cached, repeatable: words, facet, "
                            "covarep, steps (sample, steps from a pickle) or all.")


@command(preprocess_app, "mosei", config_file=True)
def preprocess_mosei(raw: Optional[Path] = _MOSEI_RAW, out: Optional[Path] = _OUT, steps: int = _STEPS,
                     binarize: str = _BINARIZE, split_list: list[str] = _FOLDS, test_fraction: float = _MOSEI_TEST,
                     val_fraction: float = _MOSEI_VAL, shard_size: float = _SHARD_SIZE,
                     workers: Optional[int] = _WORKERS, seed: int = _SEED, max_failure_rate: float = _MAX_FAILURE,
                     cache: Optional[Path] = _CACHE, hash_content: bool = _HASH, force: list[str] = _MOSEI_FORCE,
                     dry_run: bool = _DRY_RUN) -> None:
    """CMU-MOSEI (visual + text features, binary sentiment) -> shards: one sample per labelled segment, each
    modality aligned to the segment's words (mean over each word's interval) and cut or padded to --steps."""
    options = locals()  # the parsed options, taken before the import below adds a name
    from rq.pipeline.recipes.mosei import preprocess
    preprocess(**options)
