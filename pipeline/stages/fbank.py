"""The Kinetics-Sounds audio input of the released RollingQ code: a Kaldi-compatible log-mel filter bank,
our numpy implementation of what `torchaudio.compliance.kaldi.fbank` computes with the options the
released preprocessing passes (tests/test_audio_features.py compares with reference values made by
torchaudio itself).

The released repository (GeWu-Lab/RollingQ_ICML2025) loads precomputed `.npy` files; the script that
makes them is GeWu-Lab's `data/KineticSound/process_audio.py` (OGM-GE_CVPR2022): a 16 kHz 16-bit wav
read by `torchaudio.load` (floats in [-1, 1], no rescaling), minus its mean, then
`fbank(htk_compat=True, use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0,
frame_shift=10)`, zero rows appended or rows cut to 1,024, then `(x + 4.503877) / (2 * 5.141276)`.
The options it leaves at torchaudio's defaults (identical in torchaudio 0.13.1, the release's pin, and
2.11.1): 25 ms frames, snip_edges (only whole frames), remove_dc_offset (each frame minus its mean),
pre-emphasis 0.97 (the first sample against itself), a symmetric Hann window, zero-padding to the next
power of two (round_to_power_of_two), the power spectrum, triangular bins equally spaced on the mel
scale 1127·ln(1 + f/700) from 20 Hz to Nyquist, log(max(E, float32 eps)). At 16 kHz with 128 bins the
lowest bins catch no FFT bin at all: they are log(eps), as torchaudio gives them."""
from functools import lru_cache

import numpy as np

MEL_BINS = 128
FRAME_MS = 25.0
SHIFT_MS = 10.0
TARGET_FRAMES = 1024
NORM_MEAN = -4.503877   # the released normalisation: (x - mean) / (2 * std)
NORM_STD = 5.141276
PREEMPHASIS = 0.97
LOW_HZ = 20.0
LOG_FLOOR = float(np.finfo(np.float32).eps)


def frame_sizes(sample_rate: int) -> tuple[int, int, int]:
    """(window, shift, FFT size) in samples at this rate: 400, 160, 512 at 16 kHz. Computed as torchaudio
    does (int of rate·ms·0.001, FFT size the next power of two), so odd rates round the same way."""
    window = int(sample_rate * FRAME_MS * 0.001)
    shift = int(sample_rate * SHIFT_MS * 0.001)
    return window, shift, 1 << (window - 1).bit_length()


def kinetics_fbank(wave: np.ndarray, sample_rate: int, win_length: int, hop_length: int, n_fft: int,
                   floor: float = LOG_FLOOR) -> np.ndarray:
    """Normalised log-mel filter bank, float32 (TARGET_FRAMES, MEL_BINS): frames x bins, as the released
    code stores and feeds it. A waveform shorter than one window gives only padding rows."""
    feats = log_mel(wave, sample_rate, win_length, hop_length, n_fft, floor)
    out = np.zeros((TARGET_FRAMES, MEL_BINS), np.float32)   # zero rows in the log domain, as released
    out[:min(len(feats), TARGET_FRAMES)] = feats[:TARGET_FRAMES]
    return (out - np.float32(NORM_MEAN)) / np.float32(2 * NORM_STD)


def log_mel(wave: np.ndarray, sample_rate: int, win_length: int, hop_length: int, n_fft: int,
            floor: float = LOG_FLOOR) -> np.ndarray:
    """Kaldi log-mel energies, float32 (frames, MEL_BINS), frames = 1 + (len - win_length) // hop_length.
    Computed in float64: near-silent bins (energies near the floor, 1e-10 of the loudest) carry float32
    FFT rounding of up to about 1e-2 in the log; float64 leaves only the float32 reference's own."""
    wave = np.asarray(wave, np.float64)
    if wave.size < win_length:
        return np.zeros((0, MEL_BINS), np.float32)
    # The released script subtracts the clip's mean first; each frame's own mean is removed below anyway,
    # so this only changes rounding.
    wave = wave - wave.mean()
    frames = np.lib.stride_tricks.sliding_window_view(wave, win_length)[::hop_length]
    frames = frames - frames.mean(axis=1, keepdims=True)
    emphasised = np.empty_like(frames)
    emphasised[:, 1:] = frames[:, 1:] - PREEMPHASIS * frames[:, :-1]
    emphasised[:, 0] = frames[:, 0] * (1 - PREEMPHASIS)
    import scipy.fft  # here, as in spectrogram.py: a no-change rerun computes nothing and skips the import
    spectrum = scipy.fft.rfft(emphasised * _symmetric_hann(win_length), n=n_fft, axis=-1)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    # Kaldi's banks cover FFT bins 0 .. n_fft/2 - 1; the Nyquist bin has weight 0.
    energies = power[:, :n_fft // 2] @ _mel_banks(sample_rate, n_fft).T
    return np.log(np.maximum(energies, floor)).astype(np.float32)


@lru_cache(maxsize=8)
def _symmetric_hann(n: int) -> np.ndarray:
    """Kaldi's "hanning": 0.5 - 0.5·cos(2πi/(n-1)), ends at zero (torch.hann_window(periodic=False))."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))


@lru_cache(maxsize=8)
def _mel_banks(sample_rate: int, n_fft: int) -> np.ndarray:
    """(MEL_BINS, n_fft/2) triangles on the mel scale: bin b rises from edge b to b+1 and falls to b+2,
    the MEL_BINS + 2 edges equally spaced in mel from LOW_HZ to Nyquist."""
    def mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz, np.float64) / 700.0)

    edges = np.linspace(mel(LOW_HZ), mel(sample_rate / 2), MEL_BINS + 2)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = mel(sample_rate / n_fft * np.arange(n_fft // 2))[None, :]
    rising, falling = (bins - left) / (centre - left), (right - bins) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))
