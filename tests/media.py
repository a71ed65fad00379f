"""Tiny real media for tests, written by ffmpeg from its lavfi sources (no binary files checked in).

By default a clip's picture encodes its own timestamp, so a test can tell which frame was taken:
the left half's brightness is 20 + 20·floor(T), the right half's 20 + 200·frac(T) (T = the frame's
presentation time in seconds); `frame_time` reads it back from a decoded frame."""
import random
import subprocess
from pathlib import Path

import numpy as np

from rq.pipeline.ffmpeg import ffmpeg_binary

# container -> (video codec, audio codec, quality options) that the container can hold.
_CODECS = {
    "mp4": ("libx264", "aac"), "mov": ("libx264", "aac"), "mkv": ("libx264", "aac"),
    "webm": ("libvpx", "libvorbis"), "avi": ("mpeg4", "libmp3lame"), "flv": ("flv", "aac"),
}
# Near-lossless so the time-encoding brightness survives: solid regions decode to within a few levels.
_QUALITY = {"libx264": ["-preset", "veryfast", "-crf", "12", "-pix_fmt", "yuv420p"],
            "libvpx": ["-crf", "4", "-b:v", "2M", "-pix_fmt", "yuv420p"],
            "mpeg4": ["-q:v", "2", "-pix_fmt", "yuv420p"], "flv": ["-q:v", "2", "-pix_fmt", "yuv420p"]}
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}

# Frame times of the variable-frame-rate clip: pairs 0.07 s apart, every 0.4 s (0, .07, .4, .47, .8, ...).
VFR_PTS = "(floor(N/2)*0.4+mod(N,2)*0.07)"

# What a correct pipeline does with each bad input: the stage that must skip it, or None (processed).
BAD_INPUT_FAILS = {
    "zero_bytes": "probe", "truncated": "probe", "random_bytes": "probe", "no_audio": "audio",
    "audio_only": "frames", "short": None, "vfr": None, "surround_48k": None, "space": None,
    "quotes": None, "unicode": None, "leading_dash": None, "leading_dot": None,
}


def ffmpeg(*args: str) -> None:
    """Run ffmpeg to make test media; a failure shows ffmpeg's message."""
    done = subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ffmpeg {' '.join(args)}: {done.stderr.strip()}")


def tone(seconds: float, rate: int, channels: int, tone_hz: float) -> str:
    """A lavfi source: a sine of `tone_hz` at half scale on every channel."""
    exprs = "|".join([f"0.5*sin(2*PI*{tone_hz}*t)"] * channels)
    layout = _LAYOUTS.get(channels, f"{channels}c")
    return f"aevalsrc=exprs={exprs}:s={rate}:c={layout}:d={seconds}"


def picture(seconds: float, size: tuple[int, int], fps: float, color: str | None, vfr: bool,
            video_delay: float, source: str = "color") -> str:
    """A lavfi video graph: the time-encoding picture (default), a solid `color`, or another lavfi
    `source` (e.g. "testsrc2", detailed enough for JPEG quality to matter)."""
    w, h = size
    fill = f"c={color or 'black'}:" if source == "color" else ""
    frames = f"{source}={fill}s={w}x{h}:r={5 if vfr else fps}:d={seconds},format=yuv420p"
    if vfr or video_delay:
        frames += ",settb=1/1000"  # fine enough for the shifted timestamps below
    if vfr:
        frames += f",setpts='{VFR_PTS}/TB'"
    if video_delay:
        frames += f",setpts=PTS+{video_delay}/TB"
    if color is None and source == "color":
        frames += ",geq=lum='if(lt(X,W/2),20+20*floor(T),20+200*(T-floor(T)))':cb=128:cr=128"
    return frames


def make_clip(path: Path, seconds: float = 2.0, size: tuple[int, int] = (160, 120), fps: float = 25,
              audio_rate: int = 44100, channels: int = 2, audio: bool = True, video: bool = True,
              vfr: bool = False, codec: str | None = None, tone_hz: float = 440, color: str | None = None,
              video_delay: float = 0.0, ts_offset: float = 0.0, source: str = "color",
              bframes: int | None = None) -> Path:
    """Write a clip; the container follows the extension, the codecs default to what it usually holds
    (H.264/AAC for mp4). `video_delay` starts the video stream later than the audio; `ts_offset`
    shifts the whole file's timestamps (a file whose first pts is not 0). `bframes` (x264): exactly
    that many B-frames between reference frames (b-adapt off), 0 for none."""
    path = Path(path)
    vcodec, acodec = _CODECS[path.suffix.lstrip(".").lower()]
    vcodec = codec or vcodec
    args: list[str] = []
    if video:
        args += ["-f", "lavfi", "-i", picture(seconds, size, fps, color, vfr, video_delay, source)]
    if audio:
        args += ["-f", "lavfi", "-i", tone(seconds, audio_rate, channels, tone_hz)]
    if not args:
        raise ValueError("a clip needs audio or video")
    if video:
        args += ["-c:v", vcodec, *_QUALITY.get(vcodec, [])]
        if bframes is not None:
            args += ["-x264-params", f"bframes={bframes}:b-adapt=0:scenecut=0"]
        if vfr:
            args += ["-fps_mode", "passthrough"]
    if audio:
        args += ["-c:a", acodec]
    if video_delay:
        args += ["-copyts"]  # otherwise ffmpeg moves each input's first timestamp back to 0
    if ts_offset:
        args += ["-output_ts_offset", str(ts_offset)]
    ffmpeg(*args, f"file:{path.absolute()}")
    return path


def make_wav(path: Path, seconds: float = 2.0, rate: int = 16000, channels: int = 1, tone_hz: float = 440) -> Path:
    ffmpeg("-f", "lavfi", "-i", tone(seconds, rate, channels, tone_hz), "-c:a", "pcm_s16le",
           f"file:{Path(path).absolute()}")
    return Path(path)


def frame_time(image: np.ndarray) -> float:
    """The timestamp a time-encoding frame shows (inverse of `picture`), from a decoded grey/BGR image."""
    grey = image.mean(axis=2) if image.ndim == 3 else image
    grey = grey * 219 / 255 + 16  # back from full-range RGB to the limited-range luma the picture set
    w = grey.shape[1]
    left = grey[:, w // 8: 3 * w // 8].mean()
    right = grey[:, 5 * w // 8: 7 * w // 8].mean()
    return round((left - 20) / 20) + (right - 20) / 200


def make_bad_inputs(directory: Path) -> dict[str, Path]:
    """The bad-input list, every file tiny; keys as in BAD_INPUT_FAILS."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    small = dict(seconds=1.0, size=(64, 48))
    files = {
        "no_audio": make_clip(d / "no_audio.mp4", audio=False, **small),
        "audio_only": make_clip(d / "audio_only.mp4", video=False, seconds=1.0),
        "short": make_clip(d / "short.mp4", seconds=0.3, size=(64, 48)),
        "vfr": make_clip(d / "vfr.mp4", vfr=True, **small),
        "surround_48k": make_clip(d / "surround_48k.mp4", audio_rate=48000, channels=6, **small),
        "space": make_clip(d / "with space.mp4", **small),
        "quotes": make_clip(d / "quote's \"double\".mp4", **small),
        "unicode": make_clip(d / "ünïcødé_日本語.mp4", **small),
        "leading_dash": make_clip(d / "-leading-dash.mp4", **small),
        "leading_dot": make_clip(d / ".leading.dot.mp4", **small),
    }
    good = make_clip(d / "truncated.mp4", **small).read_bytes()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 2])
    files["truncated"] = d / "truncated.mp4"
    (d / "zero_bytes.mp4").write_bytes(b"")
    files["zero_bytes"] = d / "zero_bytes.mp4"
    (d / "random_bytes.mp4").write_bytes(random.Random(0).randbytes(4096))
    files["random_bytes"] = d / "random_bytes.mp4"
    return files


def rich_waveform(seconds: float, rate: int) -> np.ndarray:
    """A deterministic broadband float32 signal, the same on every machine (formulas and integer hashing,
    no RNG stream): a 60 Hz -> 0.45·rate chirp, 39 log-spaced sines, slow amplitude modulation, white
    noise 40 dB down, a DC offset of 0.05, and a 0.2 s gap of exact silence at 40 % of its length;
    peaks below 0.9, on the 16-bit grid of a wav."""
    t = np.arange(round(seconds * rate)) / rate
    top = 0.45 * rate
    wave = 0.3 * np.sin(2 * np.pi * (60 * t + (top - 60) * t ** 2 / (2 * seconds)))
    for k in range(39):
        wave += 0.012 * np.sin(2 * np.pi * 50 * 1.13 ** k * t + k)
    wave *= 1 + 0.5 * np.sin(2 * np.pi * 1.7 * t)
    wave += 0.01 * (_uniform_hash(t.size) - 0.5)
    gap = (t >= 0.4 * seconds) & (t < 0.4 * seconds + 0.2)
    wave = np.where(gap, 0.0, wave + 0.05)
    return (np.round(wave * 32768) / 32768).astype(np.float32)


def _uniform_hash(n: int) -> np.ndarray:
    """n values in [0, 1): splitmix64's finaliser of 0, 1, 2, ... (exact integer arithmetic)."""
    h = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / 2.0 ** 53
