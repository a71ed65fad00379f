"""The audio front ends of `rq preprocess --audio-features`, and the one place that turns that choice
plus the options a user gave into the audio and spectrogram stages' settings.

A front end is a setting of the spectrogram stage (part of its cache key), so switching front ends
recomputes only the spectrogram, from the cached waveform; a front end that needs another sample rate
(cremad-official) also re-decodes the audio, never the video."""
from rq.pipeline.stages import fbank
from rq.pipeline.stages.settings import AudioDecodeSettings, SpectrogramSettings

# What each computes: spectrogram.py (stft, cremad-official) and fbank.py (ks-fbank); for users, the
# --audio-features help of `rq preprocess` and the README.
FRONT_ENDS = ("stft", "cremad-official", "ks-fbank")
DEFAULT_RATE = {"stft": 16000, "cremad-official": 22050, "ks-fbank": 16000}
CREMAD_SECONDS = 3.0   # 66,150 samples at 22,050 Hz: the released code's np.tile(samples, 3)[:22050 * 3]
CREMAD_HOP = 353


def resolve(audio_features: str, recipe_seconds: float, *, sample_rate: int | None = None,
            audio_seconds: float | None = None, audio_pad: str = "repeat", n_fft: int | None = None,
            hop_length: int | None = None,
            missing_audio: str = "skip") -> tuple[AudioDecodeSettings, SpectrogramSettings]:
    """The audio and spectrogram settings of a front end; None = the front end's default. --sample-rate
    and --audio-seconds override any front end's; --n-fft and --hop-length belong to stft only.
    Raises ValueError with a one-line message for a usage error."""
    if audio_features not in FRONT_ENDS:
        raise ValueError(f"--audio-features must be one of {', '.join(FRONT_ENDS)}, not {audio_features!r}")
    if audio_features != "stft" and (n_fft is not None or hop_length is not None):
        raise ValueError(f"--n-fft and --hop-length set the stft front end; {audio_features} has its own "
                         "(see --help)")
    rate = DEFAULT_RATE[audio_features] if sample_rate is None else sample_rate
    if audio_features == "stft":
        n_fft = 512 if n_fft is None else n_fft
        spec = SpectrogramSettings(recipe_seconds if audio_seconds is None else audio_seconds, audio_pad,
                                   n_fft, n_fft, 159 if hop_length is None else hop_length)
    elif audio_features == "cremad-official":
        spec = SpectrogramSettings(CREMAD_SECONDS if audio_seconds is None else audio_seconds, audio_pad,
                                   512, 512, CREMAD_HOP, audio_features=audio_features)
    else:   # ks-fbank: the released script reads the whole wav; --audio-seconds fits it first if given
        window, shift, size = fbank.frame_sizes(rate)
        spec = SpectrogramSettings(audio_seconds, audio_pad, size, window, shift, eps=fbank.LOG_FLOOR,
                                   audio_features=audio_features)
    if spec.audio_seconds is not None and round(spec.audio_seconds * rate) < spec.win_length:
        raise ValueError(f"--audio-seconds {spec.audio_seconds:g} is shorter than one STFT window "
                         f"({spec.win_length} samples = {spec.win_length / rate:g} s at {rate} Hz)")
    return AudioDecodeSettings(sample_rate=rate, missing_audio=missing_audio), spec
