"""Frozen settings of the model and of the RollingQ rule, and the named presets."""
from dataclasses import dataclass

METHODS = ("mt", "rollingq", "concat", "unimodal-audio", "unimodal-visual")


@dataclass(frozen=True)
class RollingQConfig:
    # rho = sigma in the official code: how hard alpha reacts to AIR. With rho = 1 an AIR of 0.5
    # (a clearly biased query) gives alpha = 0.27, i.e. the anchor leans ~3:1 to the neglected side.
    rho: float = 1.0
    # |AIR| must exceed beta to rotate. AIR lives in [-2, 2]; 0.1 ignores the small imbalance an
    # untrained model has by chance while catching the bias the paper reports.
    beta: float = 0.1
    max_rotations: int = 1          # r_time; the official default
    # "running": means gathered during the epoch (no extra cost); "pass": an extra forward pass over
    # the training set when a rotation is due (the paper). Running is the default: same estimate of
    # the same quantities, one less pass over the data.
    stats: str = "running"
    rotation: str = "svd"           # "svd" is the paper's construction; "minimal" the plane rotation
    # "epoch": AIR averaged over every sample of the epoch; "last-batch": the official behaviour.
    air_scope: str = "epoch"

    def __post_init__(self):
        _one_of("rq stats", self.stats, ("running", "pass"))
        _one_of("rq rotation", self.rotation, ("svd", "minimal"))
        _one_of("rq air_scope", self.air_scope, ("epoch", "last-batch"))
        if self.max_rotations < 0 or self.beta < 0 or self.rho < 0:
            raise ValueError("rq max_rotations, beta and rho must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int
    method: str = "rollingq"
    dim: int = 768
    depth: int = 4
    heads: int = 12
    mlp_dim: int = 3072
    patch: int = 16
    image_size: int = 224
    frames: int = 3                 # frames per clip the visual encoder sees
    spec_bins: int = 257            # spectrogram height F
    spec_frames: int = 1004         # spectrogram width T
    fusion_layers: int = 1          # 1 = Vanilla MT, 2 = MT*
    fusion_heads: int = 1           # the official fusion attention is single-head
    dropout: float = 0.0

    def __post_init__(self):
        _one_of("method", self.method, METHODS)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.dim % self.heads or self.dim % self.fusion_heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads} and fusion_heads {self.fusion_heads}")
        if self.image_size % self.patch:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch {self.patch}")
        if min(self.spec_bins, self.spec_frames) < self.patch:
            raise ValueError(f"spectrogram {self.spec_bins}x{self.spec_frames} is smaller than one {self.patch}px patch")
        if self.frames < 1 or self.depth < 1 or self.fusion_layers < 1:
            raise ValueError("frames, depth and fusion_layers must be >= 1")

    @property
    def audio_grid(self) -> tuple[int, int]:
        """Token grid of the spectrogram: a stride-`patch` convolution drops the remainder rows/columns."""
        return self.spec_bins // self.patch, self.spec_frames // self.patch

    @property
    def image_grid(self) -> tuple[int, int]:
        return self.image_size // self.patch, self.image_size // self.patch


PRESETS: dict[str, dict] = {
    # Kinetics-Sounds: 3 frames, 10 s of audio -> 257 x 1004 (the paper's text; README "presets").
    "ks": dict(frames=3, spec_bins=257, spec_frames=1004),
    # CREMA-D: 1 frame, 3 s of audio -> 257 x 299.
    "cremad": dict(frames=1, spec_bins=257, spec_frames=299),
    # Small enough to train on a 2-core CPU; frames and spec_frames come from the data.
    "tiny": dict(dim=64, depth=2, heads=4, mlp_dim=128, patch=16, image_size=64),
}


def preset_config(name: str, num_classes: int, method: str = "rollingq", **overrides) -> ModelConfig:
    """A preset's ModelConfig; `overrides` replace any field (e.g. frames=, spec_frames=, rq=)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    fields = {**PRESETS[name], **overrides}
    unknown = set(fields) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown model setting(s): {', '.join(sorted(unknown))}")
    return ModelConfig(num_classes=num_classes, method=method, **fields)


def _one_of(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
