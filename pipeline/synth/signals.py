"""The signals of a synthetic clip, as ffmpeg lavfi graphs: each class's tone and box, the noise, the
per-clip corruptions; and `render_clip`, one ffmpeg call per clip."""
import colorsys
from contextlib import ExitStack
from pathlib import Path

import ffmpeg

from rq.pipeline.atomic import atomic_path
from rq.pipeline.ffmpeg import run_ffmpeg
from rq.pipeline.synth.settings import ClipSpec, SynthSettings


def class_tone(c: int) -> tuple[float, float]:
    """(pitch Hz, beat Hz) of class c. Pitches step through 250-7250 Hz by the golden ratio, so the
    first K classes are spread over the whole band whatever K is (neighbouring pitches would share a
    row of 16x16 spectrogram patches and be hard to tell apart); beats of 1-5 Hz."""
    return 250.0 + 7000.0 * ((c * 0.618034) % 1.0), 1.0 + c % 5


def class_picture(c: int) -> dict:
    """Colour (hue by the golden angle, so neighbours differ), box shape and direction of class c."""
    r, g, b = colorsys.hsv_to_rgb((c * 0.618034) % 1.0, 0.9, 0.95)
    return {"color": f"0x{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}",
            "shape": ((0.35, 0.35), (0.5, 0.22), (0.22, 0.5))[c % 3],
            "direction": ("right", "left", "down", "up")[(c // 3) % 4]}


def _video(spec: ClipSpec, settings: SynthSettings):
    w, h = settings.size
    look = class_picture(spec.visual_class)
    colour = look["color"] if settings.visual_cue == "colour" else class_picture(spec.noise_seed % 31)["color"]
    colour = _toward_background(colour, settings.visual_contrast)
    bw, bh = (max(2, round(w * look["shape"][0])), max(2, round(h * look["shape"][1])))
    # one pass along the path per 4 s, starting at a per-clip phase
    along = f"mod({spec.phase}+t/4,1)"
    x, y = {"right": (f"(W-w)*{along}", "(H-h)/2"), "left": (f"(W-w)*(1-{along})", "(H-h)/2"),
            "down": ("(W-w)/2", f"(H-h)*{along}"), "up": ("(W-w)/2", f"(H-h)*(1-{along})")}[look["direction"]]
    timing = f"r={settings.fps}:d={spec.seconds}"
    background = ffmpeg.input(f"color=c=0x404040:s={w}x{h}:{timing}", f="lavfi")
    box = ffmpeg.input(f"color=c={colour}:s={bw}x{bh}:{timing}", f="lavfi")
    picture = ffmpeg.overlay(background, box, x=x, y=y, eof_action="pass")
    if settings.visual_noise > 0:
        picture = picture.filter("noise", alls=round(settings.visual_noise * 100), allf="t",
                                 all_seed=spec.noise_seed)
    return _corrupt_picture(picture.filter("format", "yuv420p"), spec, w, h)


def _corrupt_picture(picture, spec: ClipSpec, w: int, h: int):
    """The clip's visual corruption, if any: `blur` smears the frame (a box blur of a quarter of the short
    side: shape and motion go, a colour blob stays), `occlusion` covers the middle 80% of the frame with
    the background grey (the box shows only near the edges), `noise` adds full-strength pixel noise."""
    kind = spec.visual_corruption
    if kind == "blur":
        radius = max(1, min(w, h) // 4)
        return picture.filter("boxblur", luma_radius=radius, luma_power=2, chroma_radius=max(1, radius // 2),
                              chroma_power=2)
    if kind == "occlusion":
        return picture.filter("drawbox", x=round(0.1 * w), y=round(0.1 * h), w=round(0.8 * w), h=round(0.8 * h),
                              color="0x404040", t="fill")
    if kind == "noise":
        return picture.filter("noise", alls=100, allf="t", all_seed=spec.noise_seed // 2 + 1)
    return picture


def _toward_background(colour: str, contrast: float) -> str:
    """`colour` (0xRRGGBB) moved toward the background grey 0x404040, keeping `contrast` of the difference."""
    rgb = int(colour[2:], 16)
    channels = [(rgb >> shift) & 255 for shift in (16, 8, 0)]
    return "0x" + "".join(f"{round(0x40 + contrast * (c - 0x40)):02x}" for c in channels)


def _audio(spec: ClipSpec, settings: SynthSettings, rate: int):
    """The class's pulsing tone plus white noise, as one aevalsrc input. Kept out of the filter graph on
    purpose: with audio and video in one -filter_complex, ffmpeg 9 hung on about 1 call in 100.
    Corrupted audio carries no tone: `noise` is white noise as loud as the tone, `silence` nothing."""
    pitch, beat = class_tone(spec.audio_class)
    # seeded, stateless noise in [-1, 1]: the fractional part of a hash of the sample index n
    h = f"sin(n*12.9898+{spec.noise_seed % 100000})*43758.5453"
    white = f"(2*({h}-floor({h}))-1)"
    if spec.audio_corruption == "silence":
        sound = "0"
    elif spec.audio_corruption == "noise":
        sound = f"0.5*{white}"
    else:
        sound = f"0.5*sin(2*PI*{pitch * spec.pitch:.3f}*t)*(0.6+0.4*sin(2*PI*{beat:g}*t))"
        if settings.audio_noise > 0:
            sound += f"+{settings.audio_noise * 0.5:.4f}*{white}"
    return ffmpeg.input(f"aevalsrc=exprs={sound}:s={rate}:d={spec.seconds}", f="lavfi")


def render_clip(spec: ClipSpec, settings: SynthSettings, out: Path) -> None:
    """One ffmpeg call writes the clip (and CREMA-D's wav) under temporary names, then both are renamed."""
    video_path = out / spec.video
    targets = [video_path] + ([out / spec.wav] if spec.wav else [])
    with ExitStack() as stack:
        _encode(spec, settings, video_path, [stack.enter_context(atomic_path(t)) for t in targets])


def _encode(spec: ClipSpec, settings: SynthSettings, video_path: Path, temps: list[Path]) -> None:
    picture, sound = _video(spec, settings), _audio(spec, settings, 44100)
    # one encoder thread (parallelism is the pool's); bitexact: no encoder version strings in the files
    common = dict(threads=1, fflags="+bitexact", flags="+bitexact")
    if settings.preset == "kinetics":  # H.264/AAC stereo 44.1 kHz mp4, as Kinetics downloads
        # pixel noise is incompressible: cap the rate near real Kinetics 360p files (about 1 Mbit/s)
        outputs = [ffmpeg.output(picture, sound, f"file:{temps[0]}", vcodec="libx264", preset="veryfast", crf=23,
                                 maxrate="1M", bufsize="2M", acodec="aac", ac=2, **common, **{"b:a": "128k"})]
    else:  # CREMA-D: flv1 video + mp3 in the flv; the separate wav is 16 kHz mono 16-bit
        outputs = [ffmpeg.output(picture, sound, f"file:{temps[0]}", vcodec="flv", acodec="libmp3lame",
                                 ac=1, **common, **{"q:v": 3}),
                   ffmpeg.output(sound, f"file:{temps[1]}", acodec="pcm_s16le", ar=16000, ac=1, **common)]
    run_ffmpeg(ffmpeg.merge_outputs(*outputs).overwrite_output(), stage="synth",
               path=video_path, timeout=max(120.0, 20 * spec.seconds))
