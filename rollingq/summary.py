"""What a model holds and what one sample costs: `rq model --preset P --method M`.

Counted on the meta device (shapes only: no memory, no weights), from one forward pass of a
batch of one:
- parameters: all of them; "leaf" = only those held by leaf modules (modules without children),
  which is how the thop library counts and so how the paper's Table 4 counts: the CLS tokens and
  position embeddings, bare parameters of non-leaf modules, are left out. Table 4's RollingQ
  figure adds the rotation (a D x D buffer here), so `table4` = leaf parameters + float buffers.
- multiply-accumulates (MACs) per sample: every nn.Linear (in_features per output element) and
  convolution (in_channels/groups x kernel size per output element), as thop counts them, plus the
  products a module does itself and reports through `matmul_macs(*its forward arguments)`: the
  attention products QKᵀ and AV of the encoders and fusion layers, and RollingQ's D x D rotation of
  the CLS query. Not counted: biases, softmax, LayerNorm, GELU, additions, dropout.
"""
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .config import ModelConfig
from .factory import create_model

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class ModelSummary:
    config: dict
    parameters: int            # every parameter
    trainable: int             # those with requires_grad (the release's unused LayerNorm is frozen)
    leaf_parameters: int       # parameters of leaf modules only, as thop (and Table 4) counts
    buffers: int               # floating-point buffer values (the RollingQ rotation)
    table4: int                # leaf parameters + buffers: Table 4's count, the rotation included
    parts: dict[str, int]      # leaf parameters per top-level part (encoders.audio, fusion, head, ...)
    tokens: dict[str, int]     # modality -> tokens its encoder hands the fusion (its CLS included)
    macs: dict[str, int]       # per sample: linear, conv, attention (with the rotation), total, thop

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(cfg: ModelConfig) -> ModelSummary:
    """Counts for the model `cfg` describes (built on the meta device)."""
    with torch.device("meta"):
        model = create_model(cfg).eval()
        inputs = {"audio": torch.empty(1, 1, cfg.spec_bins, cfg.spec_frames),
                  "visual": torch.empty(1, cfg.frames, 3, cfg.image_size, cfg.image_size)}
    macs = {"linear": 0, "conv": 0, "attention": 0}
    tokens: dict[str, int] = {}

    def weights(module, args, output):
        if isinstance(module, nn.Linear):
            macs["linear"] += module.in_features * output.numel()
        else:
            macs["conv"] += module.in_channels // module.groups * module.weight[0, 0].numel() * output.numel()

    def products(module, args, kwargs):
        macs["attention"] += module.matmul_macs(*args, **kwargs)

    hooks = []
    for module in model.modules():
        if isinstance(module, (nn.Linear, *_CONV)):
            hooks.append(module.register_forward_hook(weights))
        if hasattr(module, "matmul_macs"):
            hooks.append(module.register_forward_pre_hook(products, with_kwargs=True))
    for name, enc in model.encoders.items():
        enc.forward_features = _token_counting(enc.forward_features, tokens, name)
    with torch.no_grad():
        model(inputs)
    for h in hooks:
        h.remove()
    leaf = _leaf_parameters(model)
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return ModelSummary(
        config=asdict(cfg), parameters=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad), leaf_parameters=leaf,
        buffers=buffers, table4=leaf + buffers,
        parts={name: _leaf_parameters(child) for name, child in _parts(model)}, tokens=tokens,
        macs={**macs, "total": sum(macs.values()), "thop": macs["linear"] + macs["conv"]})


def _leaf_parameters(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if not any(True for _ in m.children())
               for p in m.parameters(recurse=False))


def _parts(model: nn.Module):
    """Top-level parts, with the encoders, probes one level down (encoders.audio, probes.visual)."""
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleDict):
            yield from ((f"{name}.{sub}", m) for sub, m in child.items())
        else:
            yield name, child


def _token_counting(forward_features, tokens: dict, name: str):
    """forward_features that records how many tokens it returns (it is no forward(): no hook)."""
    def counted(x):
        out = forward_features(x)
        tokens[name] = out.shape[1]
        return out
    return counted
