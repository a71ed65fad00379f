"""Which preset a run of `rq train` uses, checked against the shards before any work: without
--preset, the one that fits them; with one that does not fit, a one-line error, not a slow run.

Fits: `ks` and `cremad` are the paper's settings — ks 257×1004 spectrograms (10 s) and 3 frames per
clip, cremad 257×299 (3 s) and 1 frame, both cropping frames to 224 px. `tiny` crops 64 px frames and
takes any spectrogram. A preset fits frames whose short side is at least 2/3 of its crop (at most a
1.5x upscale; the crops of training upscale anyway). Without --preset: the paper preset whose
spectrogram shape and frames per clip the shards have, with frames it fits, else `tiny` when the
frames are under 224 px (data made for CPU runs), else no choice: the run stops and says why. With
--preset: frames it does not fit are an error (a ViT-B on 64 px frames blown up to 224, at the
paper's cost per step); another spectrogram length is fine (the model is built for the shards'
shape) and noted. Shards of sequence features (CMU-MOSEI) take the `mosei` preset, and only it."""
from itertools import islice

from rq.pipeline.console import out
from rq.train.data import ShardSource
from rq.train.data.augment import jpeg_size
from rq.train.data.source import open_shards
from rq.train.data.tarstream import TarError, url_samples
from rollingq.config import SEQUENCE_PRESETS
from rq.train.trainer.build import preset_misfit
from rq.train.trainer.config import _PRESET_DEFAULTS, ConfigError

PAPER = {"ks": ((257, 1004), 3), "cremad": ((257, 299), 1)}   # spectrogram shape, frames per clip
MAX_UPSCALE = 1.5


def _fits(preset: str, side: int, crop: int | None = None) -> bool:
    return (crop or _PRESET_DEFAULTS[preset]["image_size"]) <= MAX_UPSCALE * side


def resolve_preset(shards: str, preset: str | None, options: dict) -> str:
    """The preset to train with (printed when chosen here); ConfigError when none fits."""
    if preset is not None and preset not in _PRESET_DEFAULTS and preset not in SEQUENCE_PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join((*_PRESET_DEFAULTS, *SEQUENCE_PRESETS))}, got {preset!r}")
    src = open_shards(shards, options)
    if src.features or preset in SEQUENCE_PRESETS:   # CMU-MOSEI: no frames, no spectrograms
        misfit = preset_misfit(preset or SEQUENCE_PRESETS[0], src.features)
        if misfit:
            raise ConfigError(misfit)
        if preset is None:
            preset = SEQUENCE_PRESETS[0]
            out.print(f"preset: {preset} (chosen for the shards' sequence features: {', '.join(src.features)})",
                      markup=False)
        return preset
    frames = options.get("frames") or src.frames_per_clip
    side = frame_side(src)
    spec = tuple(src.spec_shape)
    seen = f"{spec[0]}x{spec[1]} spectrograms, {frames} frame(s) per clip, {side} px frames (short side)"
    if preset is None:
        matches = [p for p, (shape, k) in PAPER.items() if shape == spec and k == frames and _fits(p, side)]
        if matches:
            preset = matches[0]
        elif side < 224 and _fits("tiny", side):
            preset = "tiny"
        else:
            raise ConfigError(f"{shards}: no preset fits its {seen}: ks wants 257x1004 and 3 frames, cremad "
                              "257x299 and 1 frame (224 px crops), tiny frames of 43-223 px; give --preset "
                              "(ks or cremad build the paper's model for any spectrogram length)")
        out.print(f"preset: {preset} (chosen for the shards' {seen}; --preset to choose another)", markup=False)
    crop = options.get("image_size") or _PRESET_DEFAULTS[preset]["image_size"]
    if not _fits(preset, side, crop):
        tiny = "--preset tiny, " if preset != "tiny" and _fits("tiny", side) else ""
        raise ConfigError(f"--preset {preset} crops {crop} px frames but {shards} has {side} px frames: they would be "
                          f"upscaled {crop / side:.1f}x; use {tiny}--image-size {side // 16 * 16 or 16} or larger "
                          "frames (rq preprocess --frame-size)")
    # A paper preset on shards of another spectrogram shape stops the run in build (one line naming both).
    return preset


def frame_side(src: ShardSource) -> int:
    """The short side of the shards' frames: the manifest's --frame-size, else the first frame read."""
    size = ((src.preprocess or {}).get("frames") or {}).get("frame_size")
    if isinstance(size, int) and size > 0:
        return size
    for urls, _ in src.splits.values():
        for url in urls:
            try:
                for sample in islice(url_samples(url), 4):
                    for name in src.members.frame_members(sample):
                        hw = jpeg_size(sample[name])
                        if hw:
                            return min(hw)
            except (TarError, OSError, ValueError):
                continue   # a damaged shard: the loader reports it; try the next
    raise ConfigError(f"{urls[0]}: no readable JPEG frame {src.members.describe('frames')} in the first samples of "
                      "any shard (--frames-key names the frames' members)")
