"""Stage `audio`: the clip's audio as a mono float32 waveform at `sample_rate`.

The stream is the one ffmpeg picks by default (its `default` disposition first, then the most
channels), so a file whose first stream is a silent commentary track gives its main sound. ffmpeg
downmixes with its own channel matrix (`-ac 1`) and resamples (`-ar`); video is never decoded for it
(rq.pipeline.decode)."""
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rq.pipeline.decode import Decoded, decode
from rq.pipeline.errors import ClipError, NoAudioStream
from rq.pipeline.stages.settings import AudioDecodeSettings

STAGE = "audio"
VERSION = 2   # 2: the default stream, not the first


def audio_stage(path: Path, inputs: Mapping[str, Mapping[str, bytes]], settings: AudioDecodeSettings,
                timeout: float = 60.0) -> dict[str, bytes]:
    return from_decoded(decode(path, audio=settings, timeout=timeout), settings)


def from_decoded(decoded: Decoded, settings: AudioDecodeSettings) -> dict[str, bytes]:
    info = decoded.info
    if info["has_audio"]:
        wave = decoded.wave
        if wave.size == 0:
            raise ClipError(STAGE, "the audio stream decoded to no samples")
    elif settings.missing_audio == "skip":
        raise NoAudioStream(STAGE, "no audio stream")
    else:
        wave = np.zeros(0, np.float32)
    meta = {"sample_rate": settings.sample_rate, "source_channels": info["channels"],
            "source_rate": info["sample_rate"], "seconds": wave.size / settings.sample_rate}
    return {"audio.npy": to_npy(wave.astype(np.float32)), "audio.json": json.dumps(meta, sort_keys=True).encode()}


def load(inputs: Mapping[str, Mapping[str, bytes]]) -> np.ndarray:
    """The waveform a downstream stage received."""
    return np.load(io.BytesIO(inputs[STAGE]["audio.npy"]), allow_pickle=False)


def to_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
