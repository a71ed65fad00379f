"""`rq model`: what a preset's model holds and what one sample costs (rollingq.summary), as a table or
JSON. The model is resolved exactly as `rq train` resolves it (preset, method, fusion options) and
built on the meta device, so even the ViT-B presets cost no memory."""
import json

from rollingq.summary import summarize
from rq.pipeline.console import out, summary_table
from rq.train.trainer.build import model_config, preset_spec_shape
from rq.train.trainer.config import ConfigError, TrainConfig, cli_errors
from rollingq.config import SEQUENCE_PRESETS

# The datasets' class counts (Kinetics-Sounds 31, CREMA-D 6); tiny: rq synth's default.
DEFAULT_CLASSES = {"ks": 31, "ks-official": 31, "cremad": 6, "cremad-official": 6, "tiny": 4}


def cli_model(preset: str, method: str, classes: int | None, fusion_layers: int | None, fusion_block: str | None,
              as_json: bool, rolling: bool = False) -> None:
    with cli_errors():
        if preset in SEQUENCE_PRESETS:
            raise ConfigError(f"rq model counts the audio-visual presets; {preset} is not one of them")
        cfg = TrainConfig.from_options("", preset, method=method, fusion_layers=fusion_layers,
                                       fusion_block=fusion_block, rolling=rolling)
        summary = summarize(model_config(cfg, classes or DEFAULT_CLASSES[preset], preset_spec_shape(preset)))
    if as_json:
        out.print(json.dumps(summary.to_dict(), indent=2), markup=False)
        return
    c = summary.config
    counts = [("parameters, all", summary.parameters), ("  trainable", summary.trainable),
              ("  of leaf modules (as thop counts)", summary.leaf_parameters),
              *((f"    {name}", n) for name, n in summary.parts.items()),
              ("buffers (the rotation)", summary.buffers), ("Table 4's count: leaf + buffers", summary.table4)]
    rows = [[name, f"{n:,}", f"{n / 1e6:.2f}M"] for name, n in counts]
    rows += [[f"{m} tokens (CLS included)", f"{n:,}", ""] for m, n in summary.tokens.items()]
    labels = {"linear": "Linear", "conv": "convolutions", "attention": "attention products + rotation",
              "total": "total", "thop": "Linear + conv (what thop counts)"}
    rows += [[f"MACs per sample, {labels[k]}", f"{v:,}", f"{v / 1e9:.3f} G"] for k, v in summary.macs.items()]
    summary_table(f"rq model: {c['method']} on the {preset} preset ({c['num_classes']} classes, "
                  f"{c['fusion_layers']} {c['fusion_block']} fusion layer(s), audio {c['spec_bins']}x{c['spec_frames']}"
                  f"{' patched transposed' if c['audio_transpose'] else ''}, {c['frames']} frame(s) of "
                  f"{c['image_size']} px)", ["", "count", ""], rows)
