"""The multimodal model, assembled from parts (as timm composes its models): one encoder per named
modality, a fusion part (fusion.py), a classifier on the fused vector, and a linear probe per
modality. `factory.py` builds the parts each method and preset names; a new encoder or fusion
method is a new part there, never a branch here.

The encoders map their input to tokens [B, 1 + N, D] (token 0 its CLS); the model runs them, hands
the tokens to the fusion part and classifies. Probes read each encoder's CLS detached: they measure
an encoder, they do not train it (`probe_grad=True` lets their loss train the encoder too: MMML's
multi-loss). A unimodal model (one encoder, no fusion) classifies its encoder's CLS directly, and
that head, detached, is its probe.
"""
from dataclasses import dataclass, field

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .fusion import FusionStats


@dataclass
class ModelOutput:
    logits: Tensor                                             # [B, C] the model's prediction
    probes: dict[str, Tensor]                                  # modality -> [B, C] its probe's logits
    fusion: list[FusionStats] = field(default_factory=list)    # one per fusion attention layer
    # modality -> [B, D] its encoder's CLS, not detached: what balancing methods (OGM-GE, PMR) work on
    features: dict[str, Tensor] = field(default_factory=dict)


class MultimodalTransformer(nn.Module):
    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module | None, num_classes: int, dim: int,
                 probe_grad: bool = False):
        super().__init__()
        self.probe_grad = probe_grad
        if fusion is None and len(encoders) != 1:
            raise ValueError("a model without a fusion part has exactly one encoder")
        self.modalities = tuple(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = nn.Linear(fusion.out_dim if fusion is not None else dim, num_classes)
        self.probes = nn.ModuleDict({m: nn.Linear(dim, num_classes) for m in encoders} if fusion is not None else {})

    @property
    def fusion_layers(self) -> list[nn.Module]:
        """The attention layers of the fusion part (empty for concat and unimodal models)."""
        return list(self.fusion.layers) if self.fusion is not None else []

    def forward(self, inputs: dict[str, Tensor]) -> ModelOutput:
        """inputs: modality -> its batch (audio [B, 1, F, T] spectrogram, visual [B, k, 3, H, W]
        normalised frames, or sequence features [B, S, D]), and for sequence features "masks":
        modality -> [B, S] bool, the real steps. Modalities the model has no encoder for are ignored."""
        missing = [m for m in self.modalities if inputs.get(m) is None]
        if missing:
            raise ValueError(f"no input for the {', '.join(missing)} encoder")
        masks = {m: mask for m, mask in (inputs.get("masks") or {}).items() if m in self.encoders}
        tokens = {m: enc.forward_features(inputs[m], masks[m]) if m in masks else enc.forward_features(inputs[m])
                  for m, enc in self.encoders.items()}
        if self.fusion is None:
            (m, t), = tokens.items()
            logits = self.head(t[:, 0])
            # detached like every probe, so a trainer adding the probes' loss counts the head once
            return ModelOutput(logits, {m: logits.detach()}, features={m: t[:, 0]})
        # each encoder's CLS is a real token; the fusion leaves padded steps out
        token_masks = {m: F.pad(mask.bool(), (1, 0), value=True) for m, mask in masks.items()}
        fused, stats = self.fusion(tokens, token_masks)
        features = {m: t[:, 0] for m, t in tokens.items()}
        probes = {m: self.probes[m](f if self.probe_grad else f.detach()) for m, f in features.items()}
        return ModelOutput(self.head(fused), probes, stats, features)


# Parameter names of rq 0.1 (one class with fixed audio/visual attributes) -> today's parts.
_V01_PREFIXES = (("audio.", "encoders.audio."), ("visual.", "encoders.visual."), ("fusion_cls", "fusion.cls_token"),
                 ("fusion_norm.", "fusion.norm."), ("audio_probe.", "probes.audio."), ("visual_probe.", "probes.visual."))


def upgrade_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A state_dict saved by rq 0.1 in today's names (a current one passes unchanged)."""
    if any(k.startswith(("encoders.", "probes.")) for k in state) or not any(
            k.startswith(("audio.", "visual.", "fusion_cls")) for k in state):
        return state
    out = {}
    for key, value in state.items():
        for old, new in _V01_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        else:
            if key.startswith("fusion.") and key.split(".")[1].isdigit():
                key = "fusion.layers." + key[len("fusion."):]
        out[key] = value
    return out


def parameter_count(model: nn.Module, buffers: bool = False) -> int:
    """Number of parameters; with buffers=True also the floating-point buffers (the RollingQ
    rotation, which Table 4 counts as RollingQ's extra 768x768; Table 4 itself counts leaf modules
    only: rollingq.summary). Integer counters (rotations_done) are bookkeeping, never counted."""
    n = sum(p.numel() for p in model.parameters())
    if buffers:
        n += sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return n

