"""Stage `audio`: the clip's first audio stream as a mono float32 waveform at `sample_rate`.

ffmpeg maps only the audio stream (video is demuxed but never decoded), downmixes with its own
channel matrix (`-ac 1`) and resamples (`-ar`), writing raw f32le to a pipe."""
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rq.pipeline.stages import probe
from rq.pipeline.errors import ClipError, NoAudioStream
from rq.pipeline.ffmpeg import input_file, run_ffmpeg
from rq.pipeline.stages.settings import AudioDecodeSettings

STAGE = "audio"
VERSION = 1


def audio_stage(path: Path, inputs: Mapping[str, Mapping[str, bytes]], settings: AudioDecodeSettings,
                timeout: float = 60.0) -> dict[str, bytes]:
    info = probe.load(inputs)
    if info["has_audio"]:
        decode = input_file(path)["a:0"].output("pipe:", format="f32le", ac=1, ar=settings.sample_rate)
        wave = np.frombuffer(run_ffmpeg(decode, stage=STAGE, path=path, timeout=timeout), "<f4")
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
