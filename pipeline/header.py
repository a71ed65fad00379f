"""ffmpeg's description of an input (the `Input #0` lines it prints; rq ships no ffprobe) turned into
the facts rq needs: duration, streams, displayed size, rates, codecs."""
import re

_DURATION = re.compile(r"Duration: (?:(\d+):(\d+):(\d+(?:\.\d+)?)|N/A)(?:, start: (-?\d+(?:\.\d+)?))?")
_STREAM = re.compile(r"^\s*Stream #0:\d+.*?: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE = re.compile(r"(?:^|[ ,])([1-9]\d*)x([1-9]\d*)(?=[ ,\[]|$)")
_FPS = re.compile(r"(\d+(?:\.\d+)?)(k?) (?:fps|tbr)")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees")
_AUDIO = re.compile(r"(\d+) Hz, ([^,]+)")
_LAYOUT_CHANNELS = {"mono": 1, "stereo": 2, "downmix": 2, "quad": 4, "hexagonal": 6, "octagonal": 8,
                    "hexadecagonal": 16}


def parse_header(text: str) -> dict:
    """The facts of `ffmpeg -i` stderr. Width/height are as displayed: a 90° rotation in the display
    matrix swaps them, since ffmpeg rotates decoded frames the same way. The video is the first real
    video stream (never an attached cover picture), as `-map 0:V:0` takes; the audio the stream
    ffmpeg's own selection takes: `default` disposition first, then the most channels, then the first."""
    info = {"duration": None, "start": 0.0, "has_video": False, "has_audio": False, "width": None,
            "height": None, "rotation": 0, "fps": None, "video_codec": None, "sample_rate": None,
            "channels": None, "audio_codec": None, "audio_streams": 0}
    if m := _DURATION.search(text):
        if m.group(1) is not None:
            info["duration"] = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        info["start"] = float(m.group(4) or 0.0)
    audio = []
    for kind, desc, block in _streams(text):
        if kind == "Video" and not info["has_video"] and "(attached pic)" not in desc:
            _video(info, desc, block)
        elif kind == "Audio" and (facts := _audio(desc)):
            audio.append(facts)
    if audio:
        # ffmpeg's score: channels + 5,000,000 for the default disposition; the first of equal scores.
        best = max(audio, key=lambda a: a["channels"] + 5_000_000 * a.pop("default"))
        info.update(has_audio=True, audio_streams=len(audio), **best)
    return info


def _streams(text: str):
    """(kind, description, following lines) for each stream of input #0."""
    found: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith(("Input #1", "Output #")):
            break
        if m := _STREAM.match(line):
            found.append((m.group(1), m.group(2), []))
        elif found:
            found[-1][2].append(line)
    return [(kind, desc, "\n".join(block)) for kind, desc, block in found]


def _video(info: dict, desc: str, block: str) -> None:
    size = _SIZE.search(desc)
    if not size:
        return  # a video stream ffmpeg could not size (no decoder, damaged): treat as absent
    w, h = int(size.group(1)), int(size.group(2))
    rot = _ROTATION.search(block)
    rotation = int(round(float(rot.group(1)))) % 360 if rot else 0
    if rotation in (90, 270):
        w, h = h, w
    fps = _FPS.search(desc)
    info.update(has_video=True, width=w, height=h, rotation=rotation, video_codec=desc.split()[0].rstrip(","),
                fps=float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None)


def _audio(desc: str) -> dict | None:
    m = _AUDIO.search(desc)
    if not m:
        return None  # no rate: ffmpeg cannot decode it
    return {"sample_rate": int(m.group(1)), "channels": layout_channels(m.group(2).strip()),
            "audio_codec": desc.split()[0].rstrip(","), "default": "(default)" in desc}


def layout_channels(layout: str) -> int:
    """Channel count of an ffmpeg layout name: 'mono', 'stereo', '5.1(side)', '7.1', '6 channels', ..."""
    name = layout.split("(")[0].strip()
    if name in _LAYOUT_CHANNELS:
        return _LAYOUT_CHANNELS[name]
    if m := re.fullmatch(r"(\d+) channels", name):
        return int(m.group(1))
    if re.fullmatch(r"\d+(\.\d+)+", name):  # '5.1' = 5 + 1, '5.1.4' = 10
        return sum(int(g) for g in name.split("."))
    return 2
