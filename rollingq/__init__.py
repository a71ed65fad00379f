"""The RollingQ multimodal Transformer (ICML 2025): encoders, fusion, the rotation rule, presets."""
from .balance import RollingQ
from .config import ModelConfig, RollingQConfig, preset_config
from .fusion import FusionStats
from .model import ModelOutput, MultimodalTransformer, parameter_count
from .pretrained import load_pretrained
from .rotation import attention_imbalance_rate, balanced_anchor, rotation_matrix

__all__ = ["rotation_matrix", "attention_imbalance_rate", "balanced_anchor", "ModelConfig", "RollingQConfig",
           "MultimodalTransformer", "ModelOutput", "FusionStats", "RollingQ", "preset_config", "load_pretrained",
           "parameter_count"]
