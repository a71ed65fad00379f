"""Frozen settings of each pipeline stage. A stage's cache key hashes exactly its own settings,
so changing one stage's settings never invalidates another stage's cache."""
from dataclasses import asdict, dataclass
import json


@dataclass(frozen=True)
class FrameSettings:
    fps: float = 1.0          # frames at t = 0, 1/fps, 2/fps, ...
    frame_size: int = 256     # short side in pixels; 0 keeps the original size
    jpeg_quality: int = 90


@dataclass(frozen=True)
class AudioDecodeSettings:
    sample_rate: int = 16000  # mono float32 at this rate
    missing_audio: str = "skip"   # no audio stream: "skip" the clip, or "silence" (empty waveform)


@dataclass(frozen=True)
class SpectrogramSettings:
    audio_seconds: float = 10.0   # waveform brought to exactly this length before the STFT
    audio_pad: str = "repeat"     # "repeat" (the official code) or "zero"
    n_fft: int = 512
    win_length: int = 512         # Hann window
    hop_length: int = 159         # overlap 353 with a 512 window
    eps: float = 1e-7             # log(|X| + eps), as the official code


def canonical(settings) -> str:
    """Stable text of a settings object, the part of a cache key that names the settings."""
    return json.dumps(asdict(settings), sort_keys=True, separators=(",", ":"))
