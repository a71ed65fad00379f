"""The commands of training and evaluation: `rq train`, `rq sweep`, `rq eval`, `rq bench`, `rq verify`, `rq demo`,
`rq report`, `rq predict`. Each only parses its options (defaults from the settings, where each is written once)
and calls the function that does the work; the imports that cost (torch) happen inside the commands."""
from pathlib import Path
from typing import Optional

import typer

from rq.pipeline.commandline import PANEL as _PANEL, app, bench_app, command
from rq.train.sweep import TABLE1_METHODS as _TABLE1_METHODS   # light too
from rq.train.trainer.config import default_text as _d   # light: no torch


# ---- train / eval / bench (train) ----


_TRAIN_PANELS = {
    "Input": ("shards", "manifest", "frames_key", "spec_key", "label_key", "classes", "verify", "frames", "image_size", "frame_crop", "frame_pick", "random_test_frames",
              "workers", "shuffle_buffer", "decode_on", "max_steps_per_epoch"),
    "Model": ("preset", "method", "fusion_layers", "fusion_block", "rolling", "bottleneck_tokens",
              "bottleneck_layers", "cross_layers", "pretrained"),
    "OGM-GE and PMR": ("ogm_alpha", "ogm_start", "ogm_end", "pmr_alpha", "pmr_momentum", "pmr_start", "pmr_end"),
    "Runs and selection": ("seeds", "select_on"),
    "Optimisation": ("optimizer", "epochs", "lr", "batch_size", "momentum", "weight_decay", "warmup_epochs",
                     "grad_clip", "nonfinite"),
    "RollingQ": ("rq_rho", "rq_beta", "rq_max_rotations", "rq_stats", "rq_rotation", "rq_air_scope"),
    _PANEL: ("out", "resume", "stop_after", "save_every", "checkpoint_every_steps", "seed", "device", "precision",
             "compile", "wandb"),
}


# Shards of other tools (train/data/members.py): the same options for rq train and rq eval.
_FRAMES_KEY = typer.Option(None, metavar="NAME|GLOB", help="Member(s) holding a sample's JPEG frames: `jpg` (one "
                           "per sample) or a glob such as 'frame_*.jpg' (natural order) [rq's f0000.jpg ...].")
_SPEC_KEY = typer.Option(None, metavar="NAME", help="Member holding the 2-D spectrogram .npy, e.g. npy [spec.npy].")
_LABEL_KEY = typer.Option(None, metavar="NAME|JSON.PATH", help="Member holding the label (a class index or name), "
                          "e.g. cls, or a dotted path into a JSON member, e.g. json.label; names are looked up in "
                          "the classes [cls].")
_CLASSES = typer.Option(None, help="Class names, one per line in label order, for shards without an rq "
                        "manifest.json.", show_default=False)


@command(app, "train", config_file=True, panels=_TRAIN_PANELS)
def train_cmd(
    shards: str = typer.Option(..., help="Shards folder written by `rq preprocess` (reads its manifest.json), "
                                "or shard URL patterns joined by '::'; a pattern's split is its names' train-/val-/"
                                "test- prefix or the one it is given: 'train=DIR/{000000..000009}.tar::test=DIR/"
                                "eval-{0..1}.tar'."),
    manifest: Optional[str] = typer.Option(None, help="A local copy of the shards' manifest.json, for URL "
                                           "patterns with none beside them (e.g. pipe: commands)."),
    frames_key: Optional[str] = _FRAMES_KEY,
    spec_key: Optional[str] = _SPEC_KEY,
    label_key: Optional[str] = _LABEL_KEY,
    classes: Optional[Path] = _CLASSES,
    preset: Optional[str] = typer.Option(None, help="ks | cremad (the paper's text: 257x1004 / 257x299 "
                                         "spectrograms, the released model) | ks-official | cremad-official (the "
                                         "released code's inputs, 1024x128 filter bank / 257x188 STFT, its init and "
                                         "frame handling) | tiny (small model, 64 px frames, batch 16, 4 epochs, AdamW "
                                         "lr 1e-3: CPU runs, tests, the demo) | mosei (shards of rq preprocess mosei: the "
                                         "paper's 4-layer Transformer, dim 120, from scratch; SGD lr 1e-3, batch 64, "
                                         "30 epochs, as ks) [default: the one that fits the shards' spectrograms, "
                                         "frames per clip and frame size, or mosei for sequence features; none "
                                         "fitting stops the run]."),
    seeds: Optional[str] = typer.Option(None, help="Train one run per seed, e.g. 0,1,2, into OUT/seed<N> (needs "
                                        "--out); rq report aggregates them."),
    select_on: Optional[str] = typer.Option(None, help="Split that picks best.pt: val (default) | test (the "
                                            "released code's protocol: optimistic, and marked 'selected on test' "
                                            "in every table). Shards without a val split keep the last epoch."),
    method: Optional[str] = typer.Option(None, help="rollingq (default; = mt --rollingq) | mt (Vanilla MT; "
                                         "--fusion-layers 2 = MT*) | concat | ogm-ge | pmr (concat trained with "
                                         "OGM-GE / PMR) | mbt | jmt | mmml | mult | unimodal-audio | "
                                         "unimodal-visual | unimodal-text (CMU-MOSEI) (README: Table 1)."),
    out: Optional[Path] = typer.Option(None, help="Run folder [default: a new runs/<time>-<method>]."),
    resume: Optional[str] = typer.Option(None, metavar="[auto|DIR]",
                                         help="Continue a run from its last.pt, to the weights an uninterrupted run "
                                         "reaches: the --out folder, `auto` (the latest under runs/) or DIR. Its "
                                         "settings stay; a different one asked for is an error, except more "
                                         "--epochs (the run is extended).", show_default=False),
    optimizer: Optional[str] = typer.Option(None, help=f"sgd (the paper) | adamw [{_d('optimizer')}]."),
    epochs: Optional[int] = typer.Option(None, help=f"Epochs [{_d('epochs')}]."),
    lr: Optional[float] = typer.Option(None, help=f"Peak learning rate [{_d('lr')}]."),
    batch_size: Optional[int] = typer.Option(None, help=f"Batch per process [{_d('batch_size')}]."),
    momentum: Optional[float] = typer.Option(None, help=f"SGD momentum [{_d('momentum')}]; not used by adamw."),
    weight_decay: Optional[float] = typer.Option(None, help=f"Weight decay [{_d('weight_decay')}]."),
    warmup_epochs: Optional[float] = typer.Option(None, help="Linear warm-up before the cosine decay, in epochs "
                                                  f"[{_d('warmup_epochs')}]."),
    grad_clip: Optional[float] = typer.Option(None, help=f"Max gradient norm; 0 = no clipping [{_d('grad_clip')}]."),
    nonfinite: Optional[str] = typer.Option(None, help="A NaN or infinite loss or gradient: stop (one line naming "
                                            "epoch and step; the checkpoints keep the last good epoch) | skip (leave "
                                            f"that step out, counted in metrics.jsonl) [{_d('nonfinite')}]."),
    frames: Optional[int] = typer.Option(None, help="Frames per clip [the manifest's frames_per_clip]."),
    image_size: Optional[int] = typer.Option(None, help=f"Frame crop size in pixels [{_d('image_size')}]."),
    frame_crop: Optional[str] = typer.Option(None, help="clip (one RandomResizedCrop + flip for all of a clip's "
                                             "frames) | frame (each frame its own: the released code) "
                                             f"[{_d('frame_crop')}]."),
    frame_pick: Optional[str] = typer.Option(None, help="segments (a random frame in each of k equal segments, "
                                             "eval the centres) | released-ks (the released Kinetics-Sounds rule) | "
                                             "random (k frames drawn uniformly: the released CREMA-D rule, eval the "
                                             f"centres) [{_d('frame_pick')}]."),
    random_test_frames: Optional[bool] = typer.Option(None, "--random-test-frames", help="Evaluation draws its "
                                                      "frames at random too, as the released CREMA-D code does "
                                                      "(seeded, but test accuracy then depends on the draw).",
                                                      show_default=False),
    workers: Optional[int] = typer.Option(None, help=f"Loader worker processes per GPU/process [{_d('workers')}]."),
    shuffle_buffer: Optional[int] = typer.Option(None, help=f"Samples in the shuffle buffer [{_d('shuffle_buffer')}]."),
    decode_on: Optional[str] = typer.Option(None, help="cpu: the loader workers decode and crop the JPEG frames | gpu: "
                                            "the workers only read the shards; frames are decoded on the GPU (nvJPEG, "
                                            f"needs CUDA and `pip install 'rq[gpu]'`) and cropped there [{_d('decode_on')}]."),
    max_steps_per_epoch: Optional[int] = typer.Option(None, help="Cap on steps per epoch (smoke tests); 0 = none."),
    verify: bool = typer.Option(False, help="Check every shard against the manifest (size, sha256, samples) before "
                                "the first step, as `rq verify` does; each shard is checked as it is read anyway."),
    fusion_layers: Optional[int] = typer.Option(None, help=f"Fusion attention layers: 1 = Vanilla MT, 2 = MT* [{_d('fusion_layers')}]."),
    fusion_block: Optional[str] = typer.Option(None, help="released (the authors' layer: single-head attention over "
                                               "every token, encoder CLS tokens included, dropout 0.2, no residual, no "
                                               "norm) | prenorm (rq 0.1: pre-norm, residual, final LayerNorm, patch "
                                               f"tokens only) [{_d('fusion_block')}]."),
    rolling: Optional[bool] = typer.Option(None, "--rollingq", help="Add RollingQ (rotation, controller, metrics) "
                                           "to a method whose fusion has a CLS query over both modalities: mt, "
                                           "mmml, mult.", show_default=False),
    bottleneck_tokens: Optional[int] = typer.Option(None, help=f"MBT: shared bottleneck tokens [{_d('bottleneck_tokens')}]."),
    bottleneck_layers: Optional[int] = typer.Option(None, help="MBT: bottleneck blocks per modality after the "
                                                    f"encoders' blocks [{_d('bottleneck_layers')}]."),
    cross_layers: Optional[int] = typer.Option(None, help="MulT: crossmodal blocks per direction; MMML: "
                                               f"cross-modal encoder layers [{_d('cross_layers')}]."),
    ogm_alpha: Optional[float] = typer.Option(None, help=f"OGM-GE alpha: 1 - tanh(alpha * ratio) [{_d('ogm_alpha')}]."),
    ogm_start: Optional[int] = typer.Option(None, help=f"OGM-GE: first modulated epoch, from 0 [{_d('ogm_start')}]."),
    ogm_end: Optional[int] = typer.Option(None, help=f"OGM-GE: last modulated epoch [{_d('ogm_end')}]."),
    pmr_alpha: Optional[float] = typer.Option(None, help="PMR: weight of the weaker modality's prototype loss "
                                              f"[{_d('pmr_alpha')}]."),
    pmr_momentum: Optional[float] = typer.Option(None, help=f"PMR: prototype momentum [{_d('pmr_momentum')}]."),
    pmr_start: Optional[int] = typer.Option(None, help=f"PMR: first rebalanced epoch [{_d('pmr_start')}]."),
    pmr_end: Optional[int] = typer.Option(None, help=f"PMR: last rebalanced epoch [{_d('pmr_end')}]."),
    pretrained: Optional[Path] = typer.Option(None, help="Local ViT-B/16 checkpoint for both encoders: timm names "
                                              "(.safetensors/.pth, MIIL ImageNet-21K-P included) or big_vision .npz; "
                                              "never downloaded."),
    rq_rho: Optional[float] = typer.Option(None, help="RollingQ rho (official `sigma`): how hard the anchor leans "
                                           f"away from the favoured modality [{_d('rq_rho')}: alpha = 1/2]."),
    rq_beta: Optional[float] = typer.Option(None, help=f"RollingQ rotates when |AIR| > beta [{_d('rq_beta')}]."),
    rq_max_rotations: Optional[int] = typer.Option(None, help=f"RollingQ rotations at most (official `r_time`) [{_d('rq_max_rotations')}]."),
    rq_stats: Optional[str] = typer.Option(None, help="pass (the released code: an extra no-grad pass over the "
                                           "training loader) | running (means gathered while training; an "
                                           "input-independent query is taken as it is now) "
                                           f"[{_d('rq_stats')}]."),
    rq_rotation: Optional[str] = typer.Option(None, help=f"svd (the paper) | minimal (plane rotation) [{_d('rq_rotation')}]."),
    rq_air_scope: Optional[str] = typer.Option(None, help="last-batch (the released code) | epoch (AIR over every "
                                               f"training sample of the epoch) [{_d('rq_air_scope')}]. The defaults "
                                               "of every --rq-* option are the released code's; the paper does not "
                                               "publish the values behind its tables."),
    seed: Optional[int] = typer.Option(None, help=f"Seed of model init, shuffles and crops [{_d('seed')}]; see --seeds."),
    device: Optional[str] = typer.Option(None, help=f"auto | cpu | cuda | cuda:N [{_d('device')}]."),
    precision: Optional[str] = typer.Option(None, help="auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32."),
    compile: bool = typer.Option(False, help="torch.compile the model."),
    stop_after: Optional[int] = typer.Option(None, help="End this invocation after N epochs (time-limited jobs); "
                                             "`--resume` continues the run."),
    save_every: Optional[int] = typer.Option(None, metavar="N", help="Also keep the checkpoint of every Nth epoch "
                                             "as epoch<E>.pt (E as in metrics.jsonl) [0: last.pt and best.pt only]."),
    checkpoint_every_steps: Optional[int] = typer.Option(
        None, metavar="K", help="Also write last.pt every K training steps, so a killed run resumes mid-epoch "
        "(`--resume` then reads, without training on, the epoch's first batches again, and ends at the weights "
        "of an uninterrupted run) [0: at epoch ends only]."),
    wandb: Optional[str] = typer.Option(None, metavar="PROJECT", help="Also log to this Weights & Biases project "
                                        "(pip install 'rq[wandb]'; WANDB_MODE=offline works without a network)."),
) -> None:
    """Train on shards (one process, or `torchrun --nproc-per-node N $(which rq) train ...` for DDP).
    Writes config.json, metrics.jsonl, tb/, last.pt (every epoch, or every --checkpoint-every-steps K steps)
    and best.pt into the run folder (and epoch<E>.pt with --save-every)."""
    options = locals()  # the parsed options, taken before the import below adds a name
    from rq.train.trainer.fit import cli_train
    cli_train(**options)


@command(app, "sweep", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep_cmd(
    ctx: typer.Context,
    shards: str = typer.Option(..., help="Shards folder (or URL patterns) every run trains on."),
    out: Path = typer.Option(..., help="Folder of the grid: OUT/<method>/seed<N> runs, OUT/report/report.md."),
    preset: Optional[str] = typer.Option(None, help="As for rq train [default: the one that fits the shards]."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods of rq train; mt* = mt with 2 fusion "
                                          "layers, +rollingq adds RollingQ (mmml+rollingq) [default: Table 1's rows "
                                          f"for the shards' data: {','.join(_TABLE1_METHODS)}; on CMU-MOSEI shards "
                                          "unimodal-visual, unimodal-text and mult, mult+rollingq in place of "
                                          "unimodal-audio]."),
    seeds: str = typer.Option("0,1,2", help="Comma-separated seeds; each method trains once per seed."),
) -> None:
    """Train a grid of methods x seeds on one dataset with the same loop, metrics and checkpoints, then write the
    report with Table 1 (mean ± 95% interval over seeds, the paper's number beside). Any other option is an
    `rq train` option for every run, e.g. `rq sweep ... --epochs 5 --rq-beta 0`. A rerun skips finished runs and
    resumes stopped ones."""
    from rq.train.sweep import cli_sweep
    cli_sweep(shards, preset, out, methods, seeds, _train_options(ctx, shards))


def _train_options(ctx: typer.Context, shards: str) -> dict:
    """The `rq train` options among a command's extra arguments, parsed by `rq train` itself; only those given
    (None = not given; a flag left False is not given either, while 0 is a value: --workers 0)."""
    train = typer.main.get_command(app).get_command(ctx, "train")
    params = train.make_context("rq train", ["--shards", shards, *ctx.args]).params
    return {k: v for k, v in params.items()
            if v is not None and v is not False and k not in ("shards", "preset", "quiet", "verbose")}


@command(app, "eval", config_file=True)
def eval_cmd(
    ckpt: Path = typer.Option(..., help="Checkpoint (last.pt / best.pt) of `rq train`."),
    shards: str = typer.Option(..., help="Shards folder (or URL patterns, splits named as for rq train: "
                                "test=PATTERN) with the split to evaluate."),
    manifest: Optional[str] = typer.Option(None, help="A local copy of the shards' manifest.json, for URL "
                                           "patterns with none beside them (e.g. pipe: commands)."),
    frames_key: Optional[str] = _FRAMES_KEY,
    spec_key: Optional[str] = _SPEC_KEY,
    label_key: Optional[str] = _LABEL_KEY,
    classes: Optional[Path] = _CLASSES,
    split: str = typer.Option("test", help="Split to evaluate."),
    noise_modality: Optional[str] = typer.Option(None, help="audio | visual | text (MOSEI shards): run the noise "
                                                 "sweep on this modality."),
    noise_levels: str = typer.Option("0,0.25,0.5,0.75,1", help="Noise levels: x + level * σ * N(0,1) on the "
                                     "input as the model reads it (σ: see --noise-scale)."),
    noise_scale: str = typer.Option("relative", help="relative: σ = that input's standard deviation over the "
                                    "split | absolute: σ = 1, N(0, level²) in the input's own units (MultiBench, "
                                    "which the paper follows)."),
    noisy_fraction: float = typer.Option(0.0, help="Pearson test: perturb exactly round(fraction x N) samples, "
                                         "a seeded choice by key (e.g. 0.5), and correlate attention with 'is "
                                         "noisy'; 0 = off."),
    noisy_level: float = typer.Option(1.0, help="Noise level of the Pearson test's perturbed samples."),
    out: Optional[Path] = typer.Option(None, help="Output folder for eval.json and the plots "
                                       "[default: <checkpoint folder>/eval]."),
    workers: int = typer.Option(2, min=0, help="Loader worker processes."),
    seed: int = typer.Option(0, help="Seed of the noise and of the noisy-sample choice."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    verify: bool = typer.Option(False, help="Check every shard against the manifest (size, sha256, samples) first."),
) -> None:
    """Accuracy (fused, audio probe, visual probe), macro-F1, AIR and attention shares of a checkpoint;
    optional noise sweep (the paper's Table 3) and noisy-fraction Pearson test (Table 2)."""
    options = locals()  # the parsed options, taken before the import below adds a name
    from rq.train.evaluation.evaluate import cli_eval
    cli_eval(**options)


@command(app, "model")
def model_cmd(
    preset: str = typer.Option("ks", help="ks | cremad | ks-official | cremad-official | tiny (257x1004 "
                               "spectrogram, 3 frames), as for rq train."),
    method: str = typer.Option("rollingq", help="rollingq | mt | concat | ogm-ge | pmr | mbt | jmt | mmml | mult | "
                               "unimodal-audio | unimodal-visual, as for rq train."),
    rolling: bool = typer.Option(False, "--rollingq", help="With RollingQ's rotation (mt, mmml, mult)."),
    classes: Optional[int] = typer.Option(None, min=1, help="Classes [31 for ks*, 6 for cremad*, 4 for tiny].",
                                          show_default=False),
    fusion_layers: Optional[int] = typer.Option(None, help=f"Fusion attention layers [{_d('fusion_layers')}]."),
    fusion_block: Optional[str] = typer.Option(None, help=f"released | prenorm [{_d('fusion_block')}]."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Parameters (all; of leaf modules, the way thop and the paper's Table 4 count them; per part), buffers (the
    RollingQ rotation), audio and visual token counts and multiply-accumulates per sample of a preset's model.
    Built on the meta device: no memory, no weights."""
    from rq.train.model_card import cli_model
    cli_model(preset, method, classes, fusion_layers, fusion_block, as_json, rolling)


@command(bench_app, "train")
def bench_train_cmd(
    preset: str = typer.Option("tiny", help="tiny | ks | cremad | ks-official | cremad-official: the model and input "
                               "shapes to time."),
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


@command(bench_app, "loader")
def bench_loader_cmd(
    shards: str = typer.Option(..., help="Shards folder (with manifest.json) whose train split is read."),
    workers: int = typer.Option(2, help="DataLoader worker processes, the same for every pipeline."),
    batches: int = typer.Option(20, min=1, help="Batches timed per pipeline (after one warm-up batch)."),
    batch_size: int = typer.Option(64, min=1, help="Samples per batch."),
    frames: int = typer.Option(3, min=1, help="Frames sampled per clip."),
    image_size: int = typer.Option(224, min=8, help="Crop size in pixels."),
    rounds: int = typer.Option(3, min=1, help="Rounds, pipelines taking turns; each reports its median."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result here as JSON."),
) -> None:
    """Samples/s of the streaming shard loader vs the plain WebDataset pipeline and a per-clip-folder PIL
    DataLoader on the same clips, and rq's tar reader vs webdataset's."""
    from rq.train.bench.loader import bench_loader
    bench_loader(shards, workers=workers, batches=batches, batch_size=batch_size, frames=frames,
                 image_size=image_size, rounds=rounds, json_path=json_path)


@command(app, "verify")
def verify_cmd(
    folder: Path = typer.Argument(..., help="A shards folder (manifest.json + shards), e.g. one copied or downloaded."),
) -> None:
    """Check every shard a shards folder's manifest.json lists (size, sha256, sample count) and look for tars it
    does not list: one table of missing, damaged, changed and extra shards; exit 1 when anything is wrong."""
    from rq.train.data.integrity import cli_verify
    cli_verify(folder)


@command(app, "index")
def index_cmd(
    shards: list[str] = typer.Argument(..., metavar="SHARDS...", help="Shard files or brace patterns (DIR/{000000..000009}.tar), "
                                       "optionally with their split: train=PATTERN.", show_default=False),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for sizes.json and <split>.wids.json "
                                           "[default: the first shard's folder, where rq train looks].",
                                           show_default=False),
) -> None:
    """Count each tar's samples and write open_clip's sizes.json and a wids index per split (shards.wids.json
    for shards of no split), so rq train and rq eval know the sample counts of shards another tool wrote."""
    from rq.train.data.shard_index import cli_index
    cli_index(shards, out_dir)


# ---- demo / report / predict ----
@command(app, "demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo"), "--out", help="Folder for everything the demo makes: raw/ (generated "
                             "clips), shards/, runs/mt/seed<N>, runs/rollingq/seed<N>, report/. A rerun reuses what "
                             "did not change."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Parallel clips in synth and preprocess "
                                          "[default: all cores].", show_default=False),
) -> None:
    """The whole product on generated data (under 10 minutes on a 2-core CPU): rq synth (30% of clips with
    corrupted sound) -> rq preprocess kinetics (train/val/test) -> rq train (Vanilla MT and RollingQ, tiny preset,
    seeds 0,1,2, best.pt on val) -> rq eval (audio-noise sweep, Pearson test) -> rq report (seeds aggregated,
    every comparison tested). Prints the verdict with intervals and where the report is."""
    from rq.train.demo import cli_demo
    cli_demo(out, workers)


@command(app, "report")
def report_cmd(
    run_dirs: list[Path] = typer.Argument(None, help="Run folders of rq train (config.json, metrics.jsonl; "
                                          "eval/eval.json of rq eval when present), or folders of rq train "
                                          "--seeds runs (one group, aggregated).", show_default=False),
    out: Path = typer.Option(Path("report"), "--out", help="Folder for report.md and the PNGs it embeds."),
    eval_paths: list[Path] = typer.Option([], "--eval", help="eval.json of the i-th run, in run order, when rq "
                                          "eval wrote it elsewhere than RUN_DIR/eval/eval.json (repeatable)."),
    bench: Optional[Path] = typer.Option(None, "--bench", help="The --json of a `rq bench train` run: the only "
                                         "speed comparison of methods the report makes (both timed in one run)."),
) -> None:
    """Compare runs side by side on one Markdown page: seeds aggregated (mean ± std, 95% interval), RollingQ vs
    Vanilla MT with a significance test for each claim, accuracy (fused, audio probe, visual probe), AIR per epoch
    with rotations, attention shares, accuracy and attention vs audio noise, Pearson test, training speed with
    each run's load average."""
    from rq.train.report.page import cli_report
    cli_report(run_dirs or [], out, eval_paths, bench)


@command(app, "predict")
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
