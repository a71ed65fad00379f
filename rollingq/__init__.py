"""The RollingQ multimodal Transformer (ICML 2025): encoder and fusion parts, the model built from them
(`create_model`), the rotation rule and its controller, presets.

Names are imported on first use, so `import rollingq.config` (settings and presets, as the `rq`
command's help reads them) does not pay for importing torch."""
from importlib import import_module

_EXPORTS = {
    "RollingQ": "balance", "ModelConfig": "config", "RollingQConfig": "config", "preset_config": "config",
    "create_model": "factory", "FusionStats": "fusion", "ModelOutput": "model", "MultimodalTransformer": "model",
    "parameter_count": "model", "upgrade_state_dict": "model", "load_pretrained": "pretrained",
    "attention_imbalance_rate": "rotation", "balanced_anchor": "rotation", "rotation_matrix": "rotation",
    "ModelSummary": "summary", "summarize": "summary",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rollingq' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
