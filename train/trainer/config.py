"""The training settings: one frozen dataclass, resolved once by the CLI (preset defaults, then the
options a user gave), saved as `config.json` in the run folder and inside every checkpoint."""
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
import json
from pathlib import Path

from rq.pipeline.console import fail
from rollingq.config import METHODS, PRESETS, RollingQConfig
from rq.train.data.source import DataError

_RQ = RollingQConfig()  # the RollingQ defaults live with the method; the CLI only exposes them

# Per-preset training defaults. ks / cremad are the paper's settings (SGD lr 1e-3, batch 64,
# 30 epochs, 2.5 warm-up epochs, 224 px frames), meant for ImageNet-initialised encoders. tiny is
# ours, for CPU runs, tests and the demo: its encoders start from scratch, where SGD leaves the audio
# encoder at chance for hundreds of steps on log-spectrograms (measured on rq synth data) while
# AdamW learns it in tens, so tiny uses AdamW with a short warm-up.
_PRESET_DEFAULTS: dict[str, dict] = {
    "ks": dict(optimizer="sgd", epochs=30, batch_size=64, lr=1e-3, warmup_epochs=2.5, image_size=224),
    "cremad": dict(optimizer="sgd", epochs=30, batch_size=64, lr=1e-3, warmup_epochs=2.5, image_size=224),
    "tiny": dict(optimizer="adamw", epochs=4, batch_size=16, lr=1e-3, warmup_epochs=0.5, image_size=64),
}


@dataclass(frozen=True)
class TrainConfig:
    shards: str                      # shard folder with manifest.json, or shard URL patterns
    manifest: str = ""               # local manifest.json for URL patterns with none beside them (pipe:)
    out: str = ""                    # run folder; "" = a new runs/<time>-<method>
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
    # input
    frames: int = 0                  # frames per clip; 0 = the manifest's frames_per_clip
    image_size: int = 224
    workers: int = 4
    shuffle_buffer: int = 1000
    max_steps_per_epoch: int = 0     # 0 = the full epoch from the manifest (smoke tests cap it)
    # model
    fusion_layers: int = 0           # 0 = the preset's (1 = Vanilla MT, 2 = MT*)
    pretrained: str = ""             # local timm ViT-B/16 checkpoint, never downloaded
    # RollingQ (--method rollingq); meanings and defaults: rollingq.config.RollingQConfig
    rq_rho: float = _RQ.rho
    rq_beta: float = _RQ.beta
    rq_max_rotations: int = _RQ.max_rotations
    rq_stats: str = _RQ.stats        # "pass": the paper's extra forward pass; "running": means during the epoch
    rq_rotation: str = _RQ.rotation  # "svd" (paper) or "minimal"
    rq_air_scope: str = _RQ.air_scope  # "epoch" or "last-batch" (the official code)
    # execution
    seed: int = 0
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    precision: str = "auto"          # auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False
    resume: bool = False
    stop_after: int = 0              # end this invocation after N epochs (time-limited jobs; --resume goes on)

    def __post_init__(self):
        _check(self.preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        _check(self.method in METHODS, f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        _check(self.optimizer in ("sgd", "adamw"), f"--optimizer must be sgd or adamw, got {self.optimizer!r}")
        _check(self.precision in ("auto", "bf16", "fp32"),
               f"--precision must be auto, bf16 or fp32, got {self.precision!r}")
        for name in ("epochs", "batch_size"):
            _check(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be at least 1")
        _check(self.lr > 0, "--lr must be positive")
        try:
            self.rollingq()
        except ValueError as e:
            raise ConfigError(f"--rq-* options: {e}") from None
        _check(min(self.workers, self.frames, self.max_steps_per_epoch, self.stop_after) >= 0,
               "--workers, --frames, --max-steps-per-epoch and --stop-after must not be negative")

    @classmethod
    def from_options(cls, shards: str, preset: str = "ks", **options) -> "TrainConfig":
        """Preset defaults, then every option that was given (None = not given)."""
        _check(preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        given = {k: v for k, v in options.items() if v is not None}
        return cls(shards=str(shards), preset=preset, **{**_PRESET_DEFAULTS[preset], **given})

    def rollingq(self) -> RollingQConfig:
        return RollingQConfig(rho=self.rq_rho, beta=self.rq_beta, max_rotations=self.rq_max_rotations,
                              stats=self.rq_stats, rotation=self.rq_rotation, air_scope=self.rq_air_scope)

    def with_run_folder(self) -> "TrainConfig":
        """Fill in the default run folder, runs/<time>-<method>."""
        if self.out:
            return self
        return replace(self, out=str(Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{self.method}"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


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
        fail(str(e), 1)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)
