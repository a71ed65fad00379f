"""Method name -> the parts of its model. Each method is one entry of METHOD_FUSION: a function
that builds the fusion part for a ModelConfig (None for a unimodal model), plus which encoders it
uses. Adding a fusion method (MBT, MulT, ...) is adding an entry, not a branch in the model.

Methods that change how the model is trained rather than built (OGM-GE, PMR: rq.train.trainer.
balancing) share the concat fusion. RollingQ is a switch of the attention fusion (`cfg.rotates`):
any method whose fusion ends in it (mt, mmml, mult) gets the rotation buffers.
"""
from collections.abc import Callable

import torch.nn as nn

from .bottleneck import BottleneckFusion
from .config import ModelConfig
from .crossmodal import CrossmodalStage, StagedFusion
from .fusion import AttentionFusion, ConcatFusion, PreNormFusionLayer, ReleasedFusionLayer
from .joint import JointCrossAttentionFusion
from .mmml import CrossModalEncoder
from .model import MultimodalTransformer
from .sequence import SequenceEncoder
from .vit import ViTEncoder

# Unimodal methods name their modality; the fused ones use the data's (ModelConfig.modalities: audio and
# visual, or the sequence-feature modalities of CMU-MOSEI).
METHOD_MODALITIES = {"unimodal-audio": ("audio",), "unimodal-visual": ("visual",), "unimodal-text": ("text",)}


def modalities(cfg: ModelConfig) -> tuple[str, ...]:
    return METHOD_MODALITIES.get(cfg.method, cfg.modalities)


def _attention(cfg: ModelConfig) -> AttentionFusion:
    """Vanilla MT's fusion: `fusion_layers` attention layers over [fusion CLS; audio; visual].

    released: the authors' layer over every encoder token, the encoders' CLS tokens included, its
    output classified as it is (MT*, which the release does not have, stacks these layers as they
    are: layer 2 attends over layer 1's outputs). prenorm: rq 0.1's block (pre-norm, residual, a
    final LayerNorm) over the encoders' patch tokens only."""
    if cfg.fusion_block == "released":
        layers = [ReleasedFusionLayer(cfg.dim, cfg.fusion_heads, cfg.fusion_dropout, cfg.rotates)
                  for _ in range(cfg.fusion_layers)]
        return AttentionFusion(cfg.dim, layers, nn.Identity(), encoder_cls=True)
    layers = [PreNormFusionLayer(cfg.dim, cfg.fusion_heads, cfg.dropout, cfg.rotates) for _ in range(cfg.fusion_layers)]
    return AttentionFusion(cfg.dim, layers, nn.LayerNorm(cfg.dim, eps=1e-6), encoder_cls=False)


def _concat(cfg: ModelConfig) -> ConcatFusion:
    return ConcatFusion(cfg.dim, len(modalities(cfg)))


METHOD_FUSION: dict[str, Callable[[ModelConfig], nn.Module | None]] = {
    "mt": _attention,
    "rollingq": _attention,                 # = mt with the rotation (cfg.rotates)
    "concat": _concat,
    "ogm-ge": _concat,
    "pmr": _concat,
    # the released MBT: single-head bottleneck blocks after the encoders' own blocks
    "mbt": lambda cfg: BottleneckFusion(modalities(cfg), cfg.dim, cfg.mlp_dim, cfg.dropout,
                                        cfg.bottleneck_layers, cfg.bottleneck_tokens),
    "jmt": lambda cfg: JointCrossAttentionFusion(modalities(cfg), cfg.dim, cfg.fusion_heads, cfg.dropout),
    "mmml": lambda cfg: StagedFusion(CrossModalEncoder(modalities(cfg), cfg.dim, cfg.heads, cfg.mlp_dim,
                                                       cfg.dropout, cfg.cross_layers), _attention(cfg)),
    "mult": lambda cfg: StagedFusion(CrossmodalStage(modalities(cfg), cfg.dim, cfg.heads, cfg.mlp_dim,
                                                     cfg.dropout, cfg.cross_layers), _attention(cfg)),
    "unimodal-audio": lambda cfg: None,
    "unimodal-visual": lambda cfg: None,
}
# The methods of config.SEQUENCE_METHODS, kept apart: every method above runs on audio-visual data too.
SEQUENCE_METHOD_FUSION: dict[str, Callable[[ModelConfig], nn.Module | None]] = {"unimodal-text": lambda cfg: None}
# How a method's encoders differ from the plain ones: MBT's bottleneck blocks continue after the
# encoders' blocks, so the encoders leave their tokens un-normalised (the blocks normalise at the end).
METHOD_ENCODER_OPTIONS = {"mbt": dict(final_norm=False)}
# MMML's multi-loss: the unimodal heads' losses train their encoders (the probes are not detached).
MULTI_LOSS = {"mmml"}


def _vit(cfg: ModelConfig, in_chans: int, grid: tuple[int, int], **kw) -> nn.Module:
    return ViTEncoder(in_chans, grid, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, mlp_dim=cfg.mlp_dim,
                      patch=cfg.patch, dropout=cfg.dropout, **kw)


def _sequence(cfg: ModelConfig, modality: str, **options) -> nn.Module:
    return SequenceEncoder(dict(cfg.features)[modality], cfg.steps, dim=cfg.dim, depth=cfg.depth, heads=cfg.heads,
                           mlp_dim=cfg.mlp_dim, dropout=cfg.dropout, **options)


# Encoder kind -> its builder (config, modality, METHOD_ENCODER_OPTIONS): a ViT over the spectrogram as a
# 1-channel image, or over k RGB frames; a Transformer over sequence features, for every modality the
# config lists in `features`.
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "audio": lambda cfg, m, **options: _vit(cfg, 1, cfg.audio_grid, transpose=cfg.audio_transpose, **options),
    "visual": lambda cfg, m, **options: _vit(cfg, 3, cfg.image_grid, frames=cfg.frames,
                                             per_frame_positions=cfg.visual_positions == "per-frame", **options),
    "sequence": _sequence,
}


def encoder_kind(cfg: ModelConfig, modality: str) -> str:
    return "sequence" if modality in dict(cfg.features) else modality


def create_model(cfg: ModelConfig) -> MultimodalTransformer:
    """The model a ModelConfig describes."""
    used = modalities(cfg)
    absent = [m for m in used if m not in cfg.modalities]
    if absent:
        raise ValueError(f"method {cfg.method} needs {', '.join(absent)} inputs; the data have "
                         f"{' and '.join(cfg.modalities)}")
    options = METHOD_ENCODER_OPTIONS.get(cfg.method, {})
    # encoders first, then the fusion part: the order their weights draw from the seeded generator
    encoders = {m: ENCODERS[encoder_kind(cfg, m)](cfg, m, **options) for m in used}
    model = MultimodalTransformer(encoders, (METHOD_FUSION | SEQUENCE_METHOD_FUSION)[cfg.method](cfg),
                                  cfg.num_classes, cfg.dim, probe_grad=cfg.method in MULTI_LOSS)
    if cfg.init == "released":
        released_init(model)
    return model


def released_init(model: nn.Module) -> None:
    """The released code's initialisation (its `weight_init`, applied to the whole model before the
    pretrained encoder weights are loaded): Xavier-normal weights and zero biases on every Linear
    (encoder blocks, fusion, classifier, probes); Kaiming-normal (fan_out) on the audio patch
    convolution, its only nn.Conv2d (its visual patch embedding is a Conv3d, left at PyTorch's
    default, as ours is); the encoders' CLS tokens N(0, 1e-6) as its backbone sets them."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    encoders = getattr(model, "encoders", {})
    if "audio" in encoders:
        nn.init.kaiming_normal_(encoders["audio"].patch_embed.proj.weight, mode="fan_out", nonlinearity="relu")
    for enc in encoders.values():
        if isinstance(enc, ViTEncoder):
            nn.init.normal_(enc.cls_token, std=1e-6)
