"""Stage `spectrogram`: the waveform's audio front end (`settings.audio_features`, see frontends.py) as
float16. Pure numpy/scipy on the upstream waveform; never calls ffmpeg.
- "stft" (the paper's text): the waveform brought to a fixed length, `log(|STFT| + eps)`, (n_fft/2+1, T).
- "cremad-official": the same STFT of the waveform clipped to +-1 and centred as `librosa.stft`'s default
  (n_fft/2 zeros at each end: librosa >= 0.9 pads with zeros, older versions reflected; the release's
  requirements leave librosa unpinned, and an install of 2025 gets 0.10 or 0.11), (n_fft/2+1, T).
- "ks-fbank": the Kaldi log-mel filter bank of fbank.py, (1024, 128) = frames x bins.

The STFT is librosa's with `center=False` (periodic Hann window of `win_length`, zero-padded to
`n_fft` in the middle, frames every `hop_length` samples), computed in float32 as real FFTs over
blocks of a strided view of the frames: the same values (tests/test_stages.py compares), about
twice as fast as librosa.stft."""
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from rq.pipeline.stages import audio, fbank
from rq.pipeline.errors import ClipError
from rq.pipeline.stages.checks import require_finite
from rq.pipeline.stages.settings import SpectrogramSettings

STAGE = "spectrogram"
VERSION = 2   # 2: non-finite audio is a failure (version 1 cached NaN spectrograms of such clips)
_BLOCK = 64  # STFT frames per FFT call


def spectrogram_stage(path: Path, inputs: Mapping[str, Mapping[str, bytes]], settings: SpectrogramSettings,
                      timeout: float = 60.0) -> dict[str, bytes]:
    rate = _rate(inputs)
    wave = audio.load(inputs)
    require_finite(wave, STAGE, "the decoded audio", rate)
    if settings.audio_seconds is not None:
        n = round(settings.audio_seconds * rate)
        if n < settings.win_length:
            raise ClipError(STAGE, f"audio_seconds={settings.audio_seconds:g} at {rate} Hz is shorter than "
                                   f"one STFT window ({settings.win_length} samples)")
        wave = fit_length(wave, n, settings.audio_pad)
    spec = audio_features(wave, rate, settings).astype(np.float16)
    require_finite(spec, STAGE, "the spectrogram")   # float16 overflows above 65504
    return {"spec.npy": audio.to_npy(spec)}


def audio_features(wave: np.ndarray, rate: int, settings: SpectrogramSettings) -> np.ndarray:
    """The front end `settings.audio_features` of a waveform already brought to length, float32."""
    if settings.audio_features == "stft":
        return log_spectrogram(wave, settings)
    if settings.audio_features == "cremad-official":
        clipped = np.clip(np.asarray(wave, np.float32), -1.0, 1.0)
        return log_spectrogram(np.pad(clipped, settings.n_fft // 2), settings)
    if settings.audio_features == "ks-fbank":
        return fbank.kinetics_fbank(wave, rate, settings.win_length, settings.hop_length, settings.n_fft,
                                    settings.eps)
    raise ValueError(f"unknown audio_features {settings.audio_features!r}")


def fit_length(wave: np.ndarray, n: int, pad: str = "repeat") -> np.ndarray:
    """Exactly `n` samples: longer is cut; shorter is tiled ("repeat", as the official CREMA-D code)
    or zero-padded ("zero"); an empty waveform becomes silence."""
    if pad not in ("repeat", "zero"):
        raise ValueError(f"audio_pad must be 'repeat' or 'zero', not {pad!r}")
    wave = np.asarray(wave, np.float32)
    if wave.size >= n:
        return wave[:n]
    if wave.size == 0 or pad == "zero":
        return np.concatenate([wave, np.zeros(n - wave.size, np.float32)])
    return np.tile(wave, -(-n // wave.size))[:n]


def log_spectrogram(wave: np.ndarray, settings: SpectrogramSettings) -> np.ndarray:
    """log(|STFT| + eps), float32 (n_fft//2+1, T) with T = 1 + (len - n_fft) // hop (no centring)."""
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(wave, np.float32), settings.n_fft)
    frames = frames[:: settings.hop_length]
    window = _window(settings.win_length, settings.n_fft)
    import scipy.fft  # here, not at the top: a no-change rerun computes no spectrogram and skips the import
    out = np.empty((settings.n_fft // 2 + 1, len(frames)), np.float32)
    # Blocks of frames small enough to stay in cache: whole-clip temporaries (several MB) cost more
    # in fresh memory than the FFT itself.
    for i in range(0, len(frames), _BLOCK):
        np.abs(scipy.fft.rfft(frames[i:i + _BLOCK] * window, axis=-1), out=out[:, i:i + _BLOCK].T)
    return np.log(np.add(out, np.float32(settings.eps), out=out), out=out)


@lru_cache(maxsize=8)
def _window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann of `win_length`, centred in `n_fft` zeros (librosa's `get_window` + `pad_center`)."""
    window = np.zeros(n_fft, np.float32)
    start = (n_fft - win_length) // 2
    # Periodic ("fftbins") Hann: 0.5 - 0.5·cos(2πi/N) for i < N, as scipy.signal.get_window("hann", N).
    # numpy instead of scipy.signal, whose import alone costs a no-change rerun about a second.
    window[start:start + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    return window


def _rate(inputs: Mapping[str, Mapping[str, bytes]]) -> int:
    return json.loads(inputs[audio.STAGE]["audio.json"])["sample_rate"]
