"""Frozen settings of the model and of the RollingQ rule, and the named presets."""
from dataclasses import dataclass

METHODS = ("mt", "rollingq", "concat", "ogm-ge", "pmr", "mbt", "jmt", "mmml", "mult", "unimodal-audio",
           "unimodal-visual")
# "released": the fusion layer of the authors' code (fusion.ReleasedFusionLayer); "prenorm": rq 0.1's
# pre-norm block with a residual and a final LayerNorm (fusion.PreNormFusionLayer).
FUSION_BLOCKS = ("released", "prenorm")
# "timm": truncated-normal Linear weights (std 0.02), as timm's ViT; "released": the authors' code
# (Xavier-normal on every Linear, before pretrained weights are loaded; factory.released_init).
INITS = ("timm", "released")
# How the visual encoder tells the frames apart: "shared" = one spatial position table for every
# frame plus a learned embedding per frame (rq 0.1); "per-frame" = one learned position per
# (frame, patch), as the authors' code.
VISUAL_POSITIONS = ("shared", "per-frame")
# Methods only sequence-feature data (CMU-MOSEI) have the inputs for: the text baseline.
SEQUENCE_METHODS = ("unimodal-text",)
ALL_METHODS = METHODS + SEQUENCE_METHODS

# RollingQ rotates a CLS query that attends over both modalities' tokens. The methods without one,
# and why (`--rollingq` on them is this one line):
NOT_ROTATABLE = {
    "concat": "concat fusion has no attention: there is no query to rotate",
    "ogm-ge": "OGM-GE trains the concat fusion, which has no attention: there is no query to rotate",
    "pmr": "PMR trains the concat fusion, which has no attention: there is no query to rotate",
    "mbt": "MBT's modalities meet only through its bottleneck tokens; no CLS query attends over both modalities",
    "jmt": "JMT's queries each attend over one other branch; no CLS query attends over both modalities at once",
    "unimodal-audio": "a unimodal model has one modality: there is nothing to balance",
    "unimodal-visual": "a unimodal model has one modality: there is nothing to balance",
    "unimodal-text": "a unimodal model has one modality: there is nothing to balance",
}


def rolling_error(method: str) -> str | None:
    """Why `--rollingq` cannot apply to `method`, or None when it can."""
    reason = NOT_ROTATABLE.get(method)
    return f"--rollingq does not apply to --method {method}: {reason}" if reason else None


@dataclass(frozen=True)
class RollingQConfig:
    """The rule's settings. The defaults are the released code's argument-parser defaults (r_time 1,
    beta 0, sigma 0, an extra statistics pass, AIR of the last batch): one rotation at the end of
    epoch 0 with alpha = 1/2. The paper does not publish the values behind its tables."""
    # rho = sigma in the official code: how hard alpha reacts to AIR. 0 = alpha is always 1/2, the
    # anchor halfway between the two modalities' mean keys. rho = 1 with an AIR of 0.5 (a clearly
    # biased query) gives alpha = 0.27, i.e. an anchor leaning ~3:1 to the neglected side.
    rho: float = 0.0
    # |AIR| must exceed beta to rotate. AIR lives in [-2, 2]; 0 rotates at the first epoch end
    # whatever the imbalance; 0.1 ignores the small imbalance an untrained model has by chance.
    beta: float = 0.0
    max_rotations: int = 1          # r_time
    # "pass": an extra no-grad pass over the training loader when a rotation is due (model in eval
    # mode, augmentations on), as the released code. "running": means gathered while training (no
    # extra pass); where the query does not depend on the input (the first fusion layer's CLS
    # query) E[q] is the current query itself, so the rotation takes it exactly onto the anchor.
    stats: str = "pass"
    rotation: str = "svd"           # "svd" is the paper's construction; "minimal" the plane rotation
    # "last-batch": AIR of the epoch's last training batch, as the released code; "epoch": AIR over
    # every training sample of the epoch (one batch is a noisy estimate).
    air_scope: str = "last-batch"

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
    # The spectrogram as the shards store it, rows x columns: F x T for the STFT front ends, frames x
    # bins for the Kinetics filter bank (1024 x 128, as the released code stores it).
    spec_bins: int = 257
    spec_frames: int = 1004
    audio_transpose: bool = False   # patch the stored spectrogram transposed (the released code does)
    fusion_layers: int = 1          # 1 = Vanilla MT, 2 = MT*
    fusion_heads: int = 1           # the official fusion attention is single-head
    fusion_block: str = "released"
    fusion_dropout: float = 0.2     # released block: on the attention weights and on its output
    dropout: float = 0.0            # encoders (and the prenorm fusion block)
    visual_positions: str = "shared"
    init: str = "timm"
    rolling: bool = False           # RollingQ's rotation in the fusion layers (method "rollingq" = mt + this)
    bottleneck_tokens: int = 4      # MBT: shared bottleneck tokens (the released code's 4)
    bottleneck_layers: int = 4      # MBT: bottleneck blocks per modality after the encoders' blocks (4 + 4)
    cross_layers: int = 1           # MulT: crossmodal blocks per direction; MMML: cross-modal encoder layers

    # Sequence-feature inputs (CMU-MOSEI): modality -> feature size per step, each modality then has a
    # SequenceEncoder over `steps` steps; empty for the audio-visual models.
    features: tuple[tuple[str, int], ...] = ()
    steps: int = 50

    def __post_init__(self):
        _one_of("method", self.method, ALL_METHODS)
        _one_of("fusion_block", self.fusion_block, FUSION_BLOCKS)
        _one_of("init", self.init, INITS)
        _one_of("visual_positions", self.visual_positions, VISUAL_POSITIONS)
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
        if not 0 <= self.fusion_dropout < 1 or not 0 <= self.dropout < 1:
            raise ValueError("dropout and fusion_dropout must be in [0, 1)")
        if self.features and (self.steps < 1 or any(d < 1 for _, d in self.features)):
            raise ValueError(f"sequence features need steps >= 1 and sizes >= 1, got {self.steps} steps, {self.features}")
        if min(self.bottleneck_tokens, self.bottleneck_layers, self.cross_layers) < 1:
            raise ValueError("bottleneck_tokens, bottleneck_layers and cross_layers must be >= 1")
        if self.rolling and rolling_error(self.method):
            raise ValueError(rolling_error(self.method))

    @property
    def rotates(self) -> bool:
        """Whether the fusion layers hold RollingQ's rotation: `--rollingq`, or the method named after it."""
        return self.rolling or self.method == "rollingq"

    @property
    def audio_image(self) -> tuple[int, int]:
        """The (height, width) the audio encoder patches: the stored spectrogram, transposed or not."""
        return (self.spec_frames, self.spec_bins) if self.audio_transpose else (self.spec_bins, self.spec_frames)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The data's modalities: the sequence-feature ones, else audio and visual."""
        return tuple(m for m, _ in self.features) or ("audio", "visual")

    @property
    def audio_grid(self) -> tuple[int, int]:
        """Token grid of the spectrogram: a stride-`patch` convolution drops the remainder rows/columns."""
        return self.audio_image[0] // self.patch, self.audio_image[1] // self.patch

    @property
    def image_grid(self) -> tuple[int, int]:
        return self.image_size // self.patch, self.image_size // self.patch


# The released code's model details, shared by its two datasets' presets.
_RELEASED = dict(audio_transpose=True, visual_positions="per-frame", init="released")

PRESETS: dict[str, dict] = {
    # The paper's text: Kinetics-Sounds 3 frames, 10 s at 16 kHz, hop 159 -> 257 x 1004 (992 tokens).
    "ks": dict(frames=3, spec_bins=257, spec_frames=1004),
    # CREMA-D: 1 frame, 3 s -> 257 x 299 (288 tokens).
    "cremad": dict(frames=1, spec_bins=257, spec_frames=299),
    # The released code's inputs: a 1024 x 128 log-mel filter bank (frames x bins), patched as
    # 128 x 1024 -> 8 x 64 = 512 tokens (`rq preprocess --audio-features ks-fbank`) ...
    "ks-official": dict(frames=3, spec_bins=1024, spec_frames=128, **_RELEASED),
    # ... and a 257 x 188 STFT at 22.05 kHz, patched as 188 x 257 -> 11 x 16 = 176 tokens
    # (`--audio-features cremad-official`).
    "cremad-official": dict(frames=1, spec_bins=257, spec_frames=188, **_RELEASED),
    # Small enough to train on a 2-core CPU; frames and the spectrogram's shape come from the data.
    # Its fusion block is today's pre-norm one: see README "presets" for the measurement behind it.
    "tiny": dict(dim=64, depth=2, heads=4, mlp_dim=128, patch=16, image_size=64, fusion_block="prenorm"),
    # CMU-MOSEI: the paper's 4-layer Transformer from scratch, dim 120 (MultiBench's setting); the
    # paper gives no head count, MLP width or dropout: ours are 4 heads of 30, MLP 4 x dim, dropout 0.1.
    # The feature sizes and steps come from the shards.
    "mosei": dict(dim=120, depth=4, heads=4, mlp_dim=480, dropout=0.1),
}
SEQUENCE_PRESETS = ("mosei",)   # presets of sequence-feature models (the others read frames and spectrograms)


def preset_config(name: str, num_classes: int, method: str = "rollingq", **overrides) -> ModelConfig:
    """A preset's ModelConfig; `overrides` replace any field (e.g. frames=, spec_frames=, rq=)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    fields = {**PRESETS[name], **overrides}
    unknown = set(fields) - set(ModelConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown model setting(s): {', '.join(sorted(unknown))}")
    return ModelConfig(num_classes=num_classes, method=method, **fields)


def preset_input_shape(name: str) -> tuple[int, int] | None:
    """The stored spectrogram shape a preset is made for, or None when it takes the data's (tiny)."""
    preset = PRESETS[name]
    return (preset["spec_bins"], preset["spec_frames"]) if "spec_bins" in preset else None


def _one_of(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
