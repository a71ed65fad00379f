"""The one ffmpeg run per clip (rq.pipeline.decode) on real media: fast frame decoding against the
clip's own GOP, the frame cap, the default audio stream, damage found while decoding."""
import io
import json
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import webdataset as wds

from media import ffmpeg, frame_time, make_clip, tone
from rq.pipeline.errors import ClipError
from rq.pipeline.ffmpeg import ffmpeg_binary
from rq.pipeline.stages import decode_together
from rq.pipeline.stages.audio import audio_stage
from rq.pipeline.stages.frames import frames_stage
from rq.pipeline.stages.settings import AudioDecodeSettings, FrameSettings

EXACT = FrameSettings(frame_size=0, jpeg_quality=95)
FAST = FrameSettings(frame_size=0, jpeg_quality=95, frame_decode="fast")


def picture_types(path: Path) -> list[tuple[float, str]]:
    """(pts seconds, I/P/B) of every frame, in display order, as ffmpeg's showinfo reports them."""
    done = subprocess.run([ffmpeg_binary(), "-nostdin", "-hide_banner", "-i", str(path), "-map", "0:V:0", "-vf",
                           "showinfo=checksum=0", "-f", "null", "-"], capture_output=True, text=True, check=True)
    return [(float(t), kind) for t, kind in re.findall(r"pts_time:(\S+) .*? type:([IPB])", done.stderr)]


def decoded(path: Path, settings: FrameSettings) -> tuple[dict[str, bytes], list[float], list[float]]:
    """(JPEG members, recorded times, times read from the pixels)."""
    members, meta = frames_stage(path, {}, settings, 30)
    shown = [frame_time(cv2.imdecode(np.frombuffer(members[n], np.uint8), cv2.IMREAD_COLOR)) for n in sorted(members)]
    return members, meta["times"], shown


def test_fast_keeps_the_reference_frame_nearest_each_second(tmp_path):
    clip = make_clip(tmp_path / "b.mp4", seconds=4, size=(64, 48), fps=25, audio=False, bframes=3)
    types = picture_types(clip)
    references = [t for t, kind in types if kind != "B"]
    assert sum(kind == "B" for _, kind in types) >= len(types) // 2   # the clip really has B-frames
    # The bound the GOP gives: half the largest gap between reference frames (3 B-frames: 4 frames, 0.16 s).
    bound = max(b - a for a, b in zip(references, references[1:])) / 2
    assert bound == pytest.approx(0.08, abs=1e-3)

    _, times, shown = decoded(clip, FAST)
    assert len(times) == 4
    targets = np.arange(4.0)
    assert np.all(np.abs(np.subtract(times, targets)) <= bound + 1e-6)
    # each kept frame is a reference frame nearest its second (of two equally near, either), and its
    # pixels agree with its time
    assert all(any(abs(t - r) < 1e-6 for r in references) for t in times)
    assert np.abs(np.subtract(times, targets)) == pytest.approx(
        [min(abs(r - t) for r in references) for t in targets], abs=1e-6)
    assert np.allclose(shown, times, atol=0.012)
    _, exact_times, exact_shown = decoded(clip, EXACT)
    assert exact_times == pytest.approx(targets, abs=1e-6) and np.allclose(exact_shown, targets, atol=0.012)


def test_fast_equals_exact_byte_for_byte_without_b_frames(tmp_path):
    clip = make_clip(tmp_path / "p.mp4", seconds=3, size=(64, 48), fps=25, bframes=0)
    assert {kind for _, kind in picture_types(clip)} <= {"I", "P"}
    fast, exact = frames_stage(clip, {}, FAST, 30), frames_stage(clip, {}, EXACT, 30)
    assert fast[0] == exact[0] and fast[1]["times"] == exact[1]["times"] and len(fast[0]) == 3


def test_one_frame_stamped_an_hour_late_is_capped_with_a_reason(tmp_path):
    """10 s at 10 fps whose last frame says 3,600 s: the fps filter would repeat frames for an hour."""
    clip = tmp_path / "late.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=32x24:r=10:d=10,settb=1/1000,setpts='if(eq(N,99),3600/TB,PTS)'",
           "-c:v", "libx264", "-preset", "veryfast", "-fps_mode", "passthrough", f"file:{clip}")
    members, meta = frames_stage(clip, {}, FrameSettings(frame_size=0), 60)
    assert 10 <= len(members) <= 12
    assert meta["times"][:10] == pytest.approx(np.arange(10.0), abs=0.01)
    assert "timestamps span 3600.0 s" in meta["note"] and "10." in meta["note"]
    normal = frames_stage(make_clip(tmp_path / "ok.mp4", seconds=10, size=(32, 24), fps=10, audio=False), {},
                          FrameSettings(frame_size=0), 60)
    assert len(normal[0]) == 10 and "note" not in normal[1]


def test_audio_is_the_default_stream_not_the_first(tmp_path):
    clip = tmp_path / "two.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=32x24:r=10:d=2", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo:d=2",
           "-f", "lavfi", "-i", tone(2, 16000, 1, 440), "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264",
           "-c:a", "aac", "-disposition:a:0", "0", "-disposition:a:1", "default", "-shortest", f"file:{clip}")
    got = decode_together(clip, {"probe": None, "audio": AudioDecodeSettings()}, 30)
    wave = np.load(io.BytesIO(got["audio"]["audio.npy"]))
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.sqrt(np.mean(wave ** 2)) > 0.1 and abs(np.argmax(spectrum) * 16000 / wave.size - 440) < 5
    probe = got["probe"][1]
    # the default stream is mono (the silent first one stereo): ffmpeg's pick, not the most channels
    assert probe["channels"] == 1 and probe["audio_streams"] == 2


@pytest.mark.parametrize("damage", ["middle", "cut"])
def test_damage_found_while_decoding_fails_the_clip(tmp_path, damage):
    clip = make_clip(tmp_path / "c.mp4", seconds=4, size=(96, 64), source="testsrc2")
    good = tmp_path / "fs.mp4"
    ffmpeg("-i", str(clip), "-c", "copy", "-movflags", "+faststart", str(good))   # index first: a cut file opens
    data = bytearray(good.read_bytes())
    if damage == "cut":
        data = data[: len(data) * 2 // 3]
    else:
        data[len(data) // 2: len(data) // 2 + 3000] = np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
    bad = tmp_path / f"{damage}.mp4"
    bad.write_bytes(bytes(data))
    failure = decode_together(bad, {"probe": None, "frames": EXACT, "audio": AudioDecodeSettings()}, 30)["frames"]
    assert isinstance(failure, ClipError) and failure.stage == "frames"
    assert failure.reason.startswith("damaged: ffmpeg reported errors while decoding (frames decoded up to ")
    assert re.search(r"up to \d+\.\d+ s of 4\.\d+ s\)", failure.reason), failure.reason
    assert "\n" not in failure.reason and str(tmp_path) not in failure.reason
    # the undamaged file decodes without a complaint
    assert len(frames_stage(good, {}, EXACT, 30)[0]) == 4 and audio_stage(good, {}, AudioDecodeSettings(), 30)


def test_fast_decodes_exactly_where_reference_frames_are_sparse(tmp_path):
    """x265 codes P-frames as B-slices: skipping B-frames leaves only keyframes, seconds apart. Fast mode
    then decodes the clip exactly (and says so) rather than keep frames far from their second."""
    clip = tmp_path / "hevc.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=64x48:r=25:d=3", "-c:v", "libx265", "-x265-params", "log-level=error",
           f"file:{clip}")
    fast, exact = frames_stage(clip, {}, FAST, 30), frames_stage(clip, {}, EXACT, 30)
    assert fast[0] == exact[0] and fast[1]["times"] == exact[1]["times"] == [0.0, 1.0, 2.0]
    assert fast[1]["decode"] == exact[1]["decode"] == "exact"


def test_capped_frames_are_named_on_the_terminal_and_in_the_json(rq, tmp_path):
    raw = tmp_path / "raw"
    (raw / "a").mkdir(parents=True)
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=32x24:r=10:d=10,settb=1/1000,setpts='if(eq(N,99),3600/TB,PTS)'",
           "-f", "lavfi", "-i", tone(10, 16000, 1, 440), "-c:v", "libx264", "-preset", "veryfast", "-fps_mode",
           "passthrough", "-c:a", "aac", f"file:{raw / 'a' / 'late.mkv'}")
    out = tmp_path / "out"
    result = rq("preprocess", "folder", "--raw", raw, "--out", out, "--workers", "1", "--test-fraction", "0")
    assert result.exit_code == 0, result.stderr
    assert "warning: a/late.mkv: frames: kept the first" in result.stderr
    meta = json.loads(next(iter(wds.WebDataset(str(out / "train-000000.tar"), shardshuffle=False)))["json"])
    assert meta["n_frames"] <= 12 and "3600.0 s" in meta["frames_note"] and len(meta["frame_pts"]) == meta["n_frames"]
