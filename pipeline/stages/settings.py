"""Frozen settings of each pipeline stage. A stage's cache key hashes exactly its own settings,
so changing one stage's settings never invalidates another stage's cache."""
from dataclasses import dataclass, field, fields
from functools import lru_cache
import json

# Metadata of a field added after its stage's first release: left out of the cache key while it has
# its default, so results cached before the field existed (which were computed that way) stay valid.
_ADDED_LATER = {"added_later": True}
FRAME_TIMES = ("start", "middle")


@dataclass(frozen=True)
class FrameSettings:
    fps: float = 1.0          # frames at t = 0, 1/fps, 2/fps, ...
    frame_size: int = 256     # short side in pixels; 0 keeps the original size
    jpeg_quality: int = 90
    # "start": the frame shown at t = i/fps. "middle": the last frame before t = (i + 1/2)/fps, what
    # ffmpeg's fps filter gives by default, as in the released code's 1 fps frames (t = i + 0.5 s).
    times: str = field(default="start", metadata=_ADDED_LATER)
    # "exact": every frame decoded, the one shown at t kept. "fast": only reference frames decoded
    # (B-frames and the loop filter skipped), the one nearest to t kept (rq.pipeline.decode).
    frame_decode: str = field(default="exact", metadata=_ADDED_LATER)


@dataclass(frozen=True)
class AudioDecodeSettings:
    sample_rate: int = 16000  # mono float32 at this rate
    missing_audio: str = "skip"   # no audio stream: "skip" the clip, or "silence" (empty waveform)


@dataclass(frozen=True)
class SpectrogramSettings:
    """Usually made by `rq.pipeline.stages.frontends.resolve`, which fills in each front end's values."""
    audio_seconds: float | None = 10.0  # waveform brought to exactly this length first; None: as decoded
    audio_pad: str = "repeat"     # "repeat" (the official code) or "zero"
    n_fft: int = 512              # FFT size
    win_length: int = 512         # analysis window in samples (Hann), zero-padded to n_fft
    hop_length: int = 159         # overlap 353 with a 512 window
    eps: float = 1e-7             # log(|X| + eps), as the official code (ks-fbank: log(max(E, eps)))
    audio_features: str = field(default="stft", metadata=_ADDED_LATER)  # the front end: see frontends.py


def settings_dict(settings) -> dict:
    """A settings object's fields by name, in order, less the fields added later that have their default:
    what cache keys and manifests record, the same as before such a field existed."""
    return {f.name: getattr(settings, f.name) for f in fields(settings)
            if not (f.metadata.get("added_later") and getattr(settings, f.name) == f.default)}


@lru_cache(maxsize=64)   # the same few objects for every clip of a run: a rerun computes each key once per clip
def canonical(settings) -> str:
    """Stable text of a settings object, the part of a cache key that names the settings."""
    return json.dumps(settings_dict(settings), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class StepsSettings:
    steps: int = 50   # CMU-MOSEI sequences: each modality cut or zero-padded to this many steps (MultiBench's 50)
