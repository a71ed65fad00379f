"""The training settings: one frozen dataclass with the RollingQ settings nested in it, resolved once
by the CLI (preset defaults, then the options a user gave), written as `config.json` in the run
folder and inside every checkpoint by `to_dict`, read back by `from_dict` (eval, predict, resume,
report and the demo all read runs through it; run folders of rq 0.1, with flat `rq_*` keys, load too).
Every default is written here once; the CLI's help text is made from these values."""
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
import json
from pathlib import Path
import subprocess

from rq.pipeline.atomic import WriteError, write_atomic
from rq.pipeline.lock import FolderBusy
from rq.pipeline.console import fail
from rollingq.config import ALL_METHODS, FUSION_BLOCKS, PRESETS, ModelConfig, RollingQConfig, rolling_error
from rq.train.data.errors import DataError
from rq.train.trainer.ranks import cores_per_process

PRECISIONS = ("auto", "bf16", "fp32")   # auto: bf16 autocast on CUDA, fp32 on CPU (epoch.ForwardPass.create)

# Per-preset training defaults. ks / cremad are the paper's settings (SGD lr 1e-3, batch 64,
# 30 epochs, 2.5 warm-up epochs, 224 px frames), meant for ImageNet-initialised encoders. tiny is
# ours, for CPU runs, tests and the demo: its encoders start from scratch, where SGD leaves the audio
# encoder at chance for hundreds of steps on log-spectrograms (measured on rq synth data) while
# AdamW learns it in tens, so tiny uses AdamW with a short warm-up.
# ks-official / cremad-official add the released code's frame handling: each frame its own crop,
# and its frame picks (Kinetics-Sounds: its segment rule; CREMA-D: frames drawn at random).
# The fusion block is the model preset's (rollingq.config.PRESETS: tiny keeps rq 0.1's).
_PAPER = dict(optimizer="sgd", epochs=30, batch_size=64, lr=1e-3, warmup_epochs=2.5, image_size=224)
_PRESET_DEFAULTS: dict[str, dict] = {name: {"fusion_block": PRESETS[name].get("fusion_block", ModelConfig.fusion_block),
                                            **defaults} for name, defaults in {
    "ks": _PAPER,
    "cremad": _PAPER,
    "ks-official": dict(_PAPER, frame_crop="frame", frame_pick="released-ks"),
    "cremad-official": dict(_PAPER, frame_crop="frame", frame_pick="random"),
    "tiny": dict(optimizer="adamw", epochs=4, batch_size=16, lr=1e-3, warmup_epochs=0.5, image_size=64),
}.items()}
FRAME_CROPS = ("clip", "frame")
FRAME_PICKS = ("segments", "released-ks", "random")
# CMU-MOSEI: the paper's MOSEI setting (from scratch, SGD lr 1e-3, batch 64, 30 epochs, cosine), with the
# warm-up of the released code's other presets, as the paper gives none; the same values as ks. Kept out
# of the per-preset defaults the help lists (the --preset help says them).
_SEQUENCE_PRESET_DEFAULTS: dict[str, dict] = {
    "mosei": dict(_PAPER, fusion_block=PRESETS["mosei"].get("fusion_block", ModelConfig.fusion_block)),
}


@dataclass(frozen=True)
class BalanceConfig:
    """The coefficients of the balancing methods (rq.train.trainer.balancing), defaults from
    BalanceBenchmark (configs/trainer_config.yaml). Epoch ranges are inclusive, counted from 0."""
    ogm_alpha: float = 0.3          # OGM-GE: coefficient 1 - tanh(alpha * ratio) of the dominant modality
    ogm_start: int = 10             # OGM-GE modulates in epochs ogm_start..ogm_end (modulation_starts/_ends)
    ogm_end: int = 80
    pmr_alpha: float = 0.6          # PMR: weight of the weaker modality's prototype cross-entropy
    pmr_momentum: float = 0.5       # PMR: prototype <- (1 - m) * this epoch's class means + m * the previous
    pmr_start: int = 0
    pmr_end: int = 80

    def __post_init__(self):
        _check(self.ogm_alpha >= 0 and self.pmr_alpha >= 0, "--ogm-alpha and --pmr-alpha must be >= 0")
        _check(0 <= self.pmr_momentum <= 1, "--pmr-momentum must be in [0, 1]")
        _check(min(self.ogm_start, self.pmr_start) >= 0, "--ogm-start and --pmr-start must be >= 0")


BALANCE_OPTIONS = tuple(f.name for f in fields(BalanceConfig))


# Options that only say where the data is and how to run, not what is trained: a resumed run takes
# them from the command line and everything else from the run's own config (so it ends at the same
# weights); two configs that differ only in these describe the same run.
RUNTIME = {"runtime": True}


@dataclass(frozen=True)
class TrainConfig:
    shards: str = field(metadata=RUNTIME)      # shard folder with manifest.json, or shard URL patterns
    manifest: str = field(default="", metadata=RUNTIME)  # local manifest.json for pipe: URL patterns
    # shards of other tools (data/members.py): the members holding frames, spectrogram, label ("" = rq's
    # names) and a file of class names (shards without a manifest)
    frames_key: str = field(default="", metadata=RUNTIME)
    spec_key: str = field(default="", metadata=RUNTIME)
    label_key: str = field(default="", metadata=RUNTIME)
    classes: str = field(default="", metadata=RUNTIME)
    out: str = field(default="", metadata=RUNTIME)       # run folder; "" = a new runs/<time>-<method>
    preset: str = "ks"
    method: str = "rollingq"
    # optimisation (SGD or AdamW + per-step cosine schedule with linear warm-up)
    optimizer: str = "sgd"           # sgd (the paper) | adamw
    epochs: int = 30
    batch_size: int = 64             # per process; the global batch is batch_size * world size
    lr: float = 1e-3
    momentum: float = 0.9            # SGD only
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.5
    grad_clip: float = 0.0           # max gradient norm; 0 = no clipping (the paper does not clip)
    # a NaN/inf loss or gradient: stop the run, or skip that step (guard.py); a resumed run may change it
    nonfinite: str = field(default="stop", metadata=RUNTIME)
    # input
    frames: int = 0                  # frames per clip; 0 = the manifest's frames_per_clip
    image_size: int = 224
    frame_crop: str = "clip"         # clip: one RandomResizedCrop + flip for all its frames; frame: each its own
    # segments: a random frame in each of k equal segments, eval the centres; released-ks: the released
    # Kinetics-Sounds rule; random: k frames drawn uniformly (the released CREMA-D rule), eval the centres
    frame_pick: str = "segments"
    random_test_frames: bool = False  # evaluation draws its frames at random too (the released CREMA-D code)
    workers: int = field(default=4, metadata=RUNTIME)
    shuffle_buffer: int = 1000
    decode_on: str = field(default="cpu", metadata=RUNTIME)  # JPEGs decoded by the loader workers, or "gpu"
    max_steps_per_epoch: int = 0     # 0 = the full epoch from the manifest (smoke tests cap it)
    # model
    fusion_layers: int = ModelConfig.fusion_layers   # 1 = Vanilla MT, 2 = MT*
    fusion_block: str = ModelConfig.fusion_block     # released (the authors' layer) | prenorm (rq 0.1's)
    rolling: bool = False            # --rollingq: RollingQ on a method with a CLS query over both modalities
    bottleneck_tokens: int = ModelConfig.bottleneck_tokens   # MBT
    bottleneck_layers: int = ModelConfig.bottleneck_layers   # MBT
    cross_layers: int = ModelConfig.cross_layers             # MulT, MMML
    balance: BalanceConfig = field(default_factory=BalanceConfig)   # OGM-GE, PMR
    pretrained: str = ""             # local timm ViT-B/16 checkpoint, never downloaded
    # RollingQ (the controller measures AIR on every fused model, rotates with --method rollingq or --rollingq)
    rollingq: RollingQConfig = field(default_factory=RollingQConfig)
    # execution
    seed: int = 0
    device: str = field(default="auto", metadata=RUNTIME)       # auto | cpu | cuda | cuda:N
    precision: str = "auto"          # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = field(default=False, metadata=RUNTIME)
    resume: bool = field(default=False, metadata=RUNTIME)
    stop_after: int = field(default=0, metadata=RUNTIME)  # end this invocation after N epochs (--resume goes on)
    save_every: int = field(default=0, metadata=RUNTIME)  # also keep epoch<E>.pt every N epochs; 0 = last/best only
    checkpoint_every_steps: int = field(default=0, metadata=RUNTIME)  # last.pt every K steps too (mid-epoch resume)
    wandb: str = field(default="", metadata=RUNTIME)      # W&B project to log to; "" = off
    select_on: str = "val"           # best.pt: val (default) | test (the released code's protocol); selection.py
    verify: bool = field(default=False, metadata=RUNTIME)  # check every shard against the manifest first

    def __post_init__(self):
        _check(self.preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        _check(self.method in ALL_METHODS, f"--method must be one of {', '.join(ALL_METHODS)}, got {self.method!r}")
        _check(self.optimizer in ("sgd", "adamw"), f"--optimizer must be sgd or adamw, got {self.optimizer!r}")
        _check(self.select_on in ("val", "test"), f"--select-on must be val or test, got {self.select_on!r}")
        for name, choices in (("fusion_block", FUSION_BLOCKS), ("frame_crop", FRAME_CROPS), ("frame_pick", FRAME_PICKS)):
            _check(getattr(self, name) in choices, f"--{name.replace('_', '-')} must be one of {', '.join(choices)}, "
                                                  f"got {getattr(self, name)!r}")
        _check(self.nonfinite in ("stop", "skip"), f"--nonfinite must be stop or skip, got {self.nonfinite!r}")
        _check(self.precision in PRECISIONS,
               f"--precision must be auto, bf16 or fp32, got {self.precision!r}")
        for name in ("epochs", "batch_size"):
            _check(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
        _check(self.lr > 0, "--lr must be positive")
        _check(self.decode_on in ("cpu", "gpu"), f"--decode-on must be cpu or gpu, got {self.decode_on!r}")
        _check(self.fusion_layers >= 1, "--fusion-layers must be at least 1")
        _check(min(self.bottleneck_tokens, self.bottleneck_layers, self.cross_layers) >= 1,
               "--bottleneck-tokens, --bottleneck-layers and --cross-layers must be at least 1")
        _check(not self.rolling or rolling_error(self.method) is None, rolling_error(self.method) or "")
        _check(min(self.workers, self.frames, self.max_steps_per_epoch, self.stop_after, self.save_every,
                   self.checkpoint_every_steps) >= 0,
               "--workers, --frames, --max-steps-per-epoch, --stop-after, --save-every and --checkpoint-every-steps "
               "must not be negative")

    @classmethod
    def from_options(cls, shards: str, preset: str | None = None, base: "TrainConfig | None" = None,
                     **options) -> "TrainConfig":
        """Every option that was given (None = not given) over `base` (a run being resumed), else over
        the preset's defaults (ks when none is given). RollingQ's options arrive as rq_<field> (the
        CLI's --rq-* flags) and land in the nested RollingQConfig."""
        preset = preset or (base.preset if base else "ks")
        _check(preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        given = {k: v for k, v in options.items() if v is not None}
        rq = {k.removeprefix("rq_"): given.pop(k) for k in list(given) if k.startswith("rq_")}
        balance = {k: given.pop(k) for k in BALANCE_OPTIONS if k in given}
        if base is not None:
            return replace(base, shards=str(shards), preset=preset, rollingq=_rollingq({**asdict(base.rollingq), **rq}),
                           balance=BalanceConfig(**{**asdict(base.balance), **balance}), **given)
        given.setdefault("workers", default_workers())
        return cls(shards=str(shards), preset=preset, rollingq=_rollingq(rq), balance=BalanceConfig(**balance),
                   **{**(_PRESET_DEFAULTS | _SEQUENCE_PRESET_DEFAULTS)[preset], **given})

    def differences(self, other: "TrainConfig") -> dict[str, tuple]:
        """Settings (not runtime options) that differ: name -> (self's value, other's)."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {f.name: (mine[f.name], theirs[f.name]) for f in fields(self)
                if not f.metadata.get("runtime") and mine[f.name] != theirs[f.name]}

    def resumed_with(self, given: "TrainConfig") -> "TrainConfig":
        """This (saved) run's settings with the runtime options of `given`, the command line."""
        runtime = {f.name: getattr(given, f.name) for f in fields(self) if f.metadata.get("runtime")}
        return replace(self, **{**runtime, "resume": True})

    def with_run_folder(self) -> "TrainConfig":
        """Fill in the default run folder, runs/<time>-<method>."""
        if self.out:
            return self
        return replace(self, out=str(Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{self.method}"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config written by to_dict, by rq 0.1 (flat rq_* keys, fusion_layers 0 = the preset's),
        or a hand-edited one; unknown keys are ignored, bad values are a ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError("a run's config must be a JSON object")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        rq = values.pop("rollingq", None) or {k.removeprefix("rq_"): v for k, v in d.items() if k.startswith("rq_")}
        if values.get("fusion_layers") == 0:
            values["fusion_layers"] = ModelConfig.fusion_layers
        # Runs written before the released fusion block existed trained rq 0.1's pre-norm block.
        values.setdefault("fusion_block", "prenorm")
        balance = values.pop("balance", None) or {}
        try:
            return cls(rollingq=_rollingq(rq), balance=BalanceConfig(**balance), **values)
        except TypeError as e:
            raise ConfigError(f"a run's config does not fit this rq version: {e}") from None

    def save(self, path: Path, extra: dict | None = None) -> None:
        """config.json: the resolved settings, plus `extra` (e.g. provenance; from_dict ignores it)."""
        write_atomic(Path(path), (json.dumps({**self.to_dict(), **(extra or {})}, indent=2) + "\n").encode())


def provenance() -> dict:
    """Which rq made a run: its version, and the git commit when it runs from a checkout (None otherwise)."""
    from rq import __version__
    root = Path(__file__).resolve().parents[2]
    try:
        git = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        commit = git.stdout.strip() if git.returncode == 0 else None
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()) if commit else None
    except (OSError, subprocess.TimeoutExpired):
        commit = dirty = None
    return {"rq_version": __version__, "git_commit": commit, "git_dirty": dirty}


def default_workers() -> int:
    """Loader processes per training process: the cores one training process may use (ranks.py: shared
    by the processes launched on this machine, or its own under srun), less one for itself."""
    return max(1, cores_per_process() - 1)


def default_text(name: str) -> str:
    """A training option's default as the CLI's help shows it: the value, or per preset where the
    presets differ ("ks, cremad 30; tiny 4"). RollingQ options are named rq_<field>."""
    if name.startswith("rq_"):
        return _fmt(getattr(RollingQConfig(), name.removeprefix("rq_")))
    if name == "workers":
        return f"the cores less one, here {default_workers()}"
    if name in BALANCE_OPTIONS:
        return _fmt(getattr(BalanceConfig(), name))
    base = next(f for f in fields(TrainConfig) if f.name == name).default
    presets_by_value: dict = {}
    for p, d in _PRESET_DEFAULTS.items():
        presets_by_value.setdefault(d.get(name, base), []).append(p)
    if len(presets_by_value) == 1:
        return _fmt(next(iter(presets_by_value)))
    return "; ".join(f"{', '.join(ps)} {_fmt(v)}" for v, ps in presets_by_value.items())


def _fmt(v) -> str:
    return "none" if v in ("", None) else f"{v:g}" if isinstance(v, float) else str(v)


def _rollingq(values: dict) -> RollingQConfig:
    try:
        return RollingQConfig(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--rq-* options: {e}") from None


class ConfigError(ValueError):
    """A usage error in the training options: the CLI prints it as one line and exits 2."""


@contextmanager
def cli_errors():
    """For the `rq train / eval / bench train` commands: a usage error is one line and exit 2, shards
    that cannot be read one line and exit 1; never a traceback."""
    try:
        yield
    except ConfigError as e:
        fail(str(e), 2)
    except DataError as e:
        fail(str(e), e.exit_code)
    except (WriteError, FolderBusy) as e:   # a full disk; a run folder another rq train writes
        fail(str(e), 1)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
