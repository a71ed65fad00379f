"""The per-clip stages on real media made by ffmpeg: frame timing, sizes, audio decoding, the
spectrogram against librosa, and every bad input giving a result or a one-line ClipError."""
import io
import json
import os
import stat
from pathlib import Path

import cv2
import librosa
import numpy as np
import pytest

from media import BAD_INPUT_FAILS, ffmpeg, frame_time, make_bad_inputs, make_clip
from rq.pipeline.stages.audio import audio_stage
from rq.pipeline.errors import ClipError, NoAudioStream
from rq.pipeline.ffmpeg import FfmpegMissing, ffmpeg_binary
from rq.pipeline.stages.frames import frames_stage
from rq.pipeline.header import layout_channels
from rq.pipeline.stages.probe import probe_stage
from rq.pipeline.stages.settings import AudioDecodeSettings, FrameSettings, SpectrogramSettings, canonical
from rq.pipeline.stages.spectrogram import fit_length, log_spectrogram, spectrogram_stage

ORIGINAL = FrameSettings(frame_size=0, jpeg_quality=95)


def run_chain(path: Path, frames=ORIGINAL, audio=AudioDecodeSettings(), spec=SpectrogramSettings(audio_seconds=3)):
    """probe -> frames -> audio -> spectrogram, as the runner chains them."""
    inputs: dict[str, dict[str, bytes]] = {}
    inputs["probe"] = probe_stage(path, inputs, None, 30)[0]
    inputs["frames"] = frames_stage(path, inputs, frames, 30)[0]
    inputs["audio"] = audio_stage(path, inputs, audio, 30)
    inputs["spectrogram"] = spectrogram_stage(path, inputs, spec, 30)
    return inputs


def probe(path: Path) -> dict:
    return probe_stage(path, {}, None, 30)[1]


def frames_of(path: Path, settings: FrameSettings = ORIGINAL) -> dict[str, np.ndarray]:
    return frames_and_times(path, settings)[0]


def frames_and_times(path: Path, settings: FrameSettings = ORIGINAL) -> tuple[dict[str, np.ndarray], list[float]]:
    """The decoded frames by member name, and the times the stage recorded for them."""
    out, meta = frames_stage(path, {}, settings, 30)
    return {name: cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR) for name, jpg in out.items()}, meta["times"]


def shown_times(path: Path, recorded_as_shown: bool = True) -> list[float]:
    """Timestamps of the frames taken, read from their pixels, in name order; checked against the
    times the stage recorded for them (their pts, on the slots' timeline, which starts at the file's
    first timestamp of any stream: one constant offset from the pixels' clock) unless the file's pts
    differ from its pixels."""
    frames, recorded = frames_and_times(path)
    shown = [frame_time(frames[name]) for name in sorted(frames)]
    if recorded_as_shown:
        offsets = np.subtract(recorded, shown)
        assert np.ptp(offsets) < 0.012 and abs(offsets[0]) < 0.03, (shown, recorded)
    return shown


def npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


# ---- frames: which frame, how many, in what order ----

def test_ten_second_clip_gives_ten_frames_at_whole_seconds_in_name_order(tmp_path):
    clip = make_clip(tmp_path / "ten.mp4", seconds=10, size=(64, 48), audio=False)
    frames = frames_of(clip)
    assert len(frames) == 10
    names = sorted(frames)
    assert names[0] == "f0000.jpg" and names[-1] == "f0009.jpg"
    # the frame shown at t = k is the one whose pts is k (25 fps grid), not 0.48 s later as `fps=1` gives
    assert np.allclose([frame_time(frames[n]) for n in names], np.arange(10), atol=0.02)


def test_middle_frame_times_are_the_released_codes_and_keep_old_cache_keys(tmp_path):
    clip = make_clip(tmp_path / "ten.mp4", seconds=10, size=(64, 48), audio=False)
    frames, recorded = frames_and_times(clip, FrameSettings(frame_size=0, jpeg_quality=95, times="middle"))
    # the last frame before t = k + 0.5 on the 25 fps grid: k + 0.48, what a plain `fps=1` gives
    assert np.allclose([frame_time(frames[n]) for n in sorted(frames)], np.arange(10) + 0.48, atol=0.02)
    assert recorded == pytest.approx(np.arange(10) + 0.48, abs=1e-6)
    # The setting joined the cache key after caches existed: at its default, keys stay as they were.
    assert canonical(FrameSettings()) == '{"fps":1.0,"frame_size":256,"jpeg_quality":90}'
    assert canonical(FrameSettings(frame_decode="fast")) != canonical(FrameSettings())
    assert canonical(FrameSettings(times="middle")) != canonical(FrameSettings())


@pytest.mark.parametrize("kind, expected", [
    # pairs of frames 0.07 s apart every 0.4 s: at t = 1 the screen still shows the frame from 0.87 s
    ("vfr", [0.0, 0.87]),
    # 29.97 fps: the frame at 0.9676 s is shown at t = 1 (the next one comes at 1.0010 s)
    ("ntsc", [0.0, 29 / 29.97, 59 / 29.97, 89 / 29.97]),
    # video starts 0.5 s after the audio: t = 0 shows its first frame, t = 1 the frame from 0.98 s
    ("late_video", [0.5, 0.98, 1.98, 2.98]),
    # whole file's timestamps start at 1.5 s: slots count from the file's start
    ("ts_offset", [0.0, 1.0, 2.0]),
])
def test_frame_shown_at_each_second(tmp_path, kind, expected):
    make = {"vfr": dict(seconds=2, vfr=True, audio=False), "ntsc": dict(seconds=3, fps=29.97, audio=False),
            "late_video": dict(seconds=3, video_delay=0.5), "ts_offset": dict(seconds=3, ts_offset=1.5, audio=False)}
    clip = make_clip(tmp_path / f"{kind}.mp4", size=(64, 48), **make[kind])
    # The mp4 muxer stores the VFR clip's odd frames 1 tick after the even ones (pts 0.8001 for the
    # frame drawn at 0.87): the frame is right, its recorded time is the file's.
    assert np.allclose(shown_times(clip, recorded_as_shown=kind != "vfr"), expected, atol=0.012)


def test_resize_keeps_aspect_with_short_side(tmp_path):
    clip = make_clip(tmp_path / "wide.mp4", seconds=1, size=(160, 120), audio=False)
    assert {f.shape for f in frames_of(clip, FrameSettings(frame_size=64)).values()} == {(64, 85, 3)}
    assert {f.shape for f in frames_of(clip, FrameSettings(frame_size=0)).values()} == {(120, 160, 3)}


def test_rotated_clip_is_probed_and_framed_as_displayed(tmp_path):
    stored = make_clip(tmp_path / "stored.mp4", seconds=1, size=(160, 120), audio=False)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(stored), "-c", "copy", str(rotated))
    info = probe(rotated)
    assert (info["width"], info["height"], info["rotation"]) == (120, 160, 90)
    assert {f.shape for f in frames_of(rotated, FrameSettings(frame_size=60)).values()} == {(80, 60, 3)}


def test_jpeg_quality_changes_size(tmp_path):
    clip = make_clip(tmp_path / "detail.mp4", seconds=1, size=(160, 120), audio=False, source="testsrc2")
    sizes = {q: len(frames_stage(clip, {}, FrameSettings(frame_size=0, jpeg_quality=q), 30)[0]["f0000.jpg"])
             for q in (30, 95)}
    assert sizes[30] < 0.7 * sizes[95]


# ---- audio ----

def test_surround_48k_is_downmixed_to_mono_16k(bad):
    inputs = run_chain(bad["surround_48k"])
    wave = npy(inputs["audio"]["audio.npy"])
    meta = json.loads(inputs["audio"]["audio.json"])
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert meta["source_channels"] == 6 and meta["source_rate"] == 48000 and meta["sample_rate"] == 16000
    assert abs(meta["seconds"] - 1.0) < 0.05 and wave.size == round(meta["seconds"] * 16000)
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / wave.size - 440) < 5  # the tone every channel carries


def test_missing_audio_skip_or_silence(bad):
    with pytest.raises(NoAudioStream, match="no audio stream"):
        run_chain(bad["no_audio"])
    inputs = run_chain(bad["no_audio"], audio=AudioDecodeSettings(missing_audio="silence"))
    assert npy(inputs["audio"]["audio.npy"]).size == 0
    spec = npy(inputs["spectrogram"]["spec.npy"])
    assert spec.shape == (257, 299) and np.all(spec == np.float16(np.log(1e-7)))


# ---- spectrogram ----

def noisy_tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)


@pytest.mark.parametrize("seconds, frames", [(10, 1004), (3, 299)])
def test_log_spectrogram_matches_librosa_to_fp16(seconds, frames):
    wave = noisy_tone(seconds)
    ours = log_spectrogram(wave, SpectrogramSettings(audio_seconds=seconds)).astype(np.float16)
    ref = np.log(np.abs(librosa.stft(wave, n_fft=512, hop_length=159, win_length=512, window="hann",
                                     center=False)) + 1e-7)
    assert ours.shape == ref.shape == (257, frames)
    np.testing.assert_allclose(ours.astype(np.float32), ref, rtol=2 ** -10, atol=2e-3)


def test_spectrogram_stage_of_a_decoded_clip(bad):
    inputs = run_chain(bad["space"], spec=SpectrogramSettings(audio_seconds=10))
    spec = npy(inputs["spectrogram"]["spec.npy"])
    wave = fit_length(npy(inputs["audio"]["audio.npy"]), 160000, "repeat")
    assert spec.dtype == np.float16 and spec.shape == (257, 1004)
    assert np.array_equal(spec, log_spectrogram(wave, SpectrogramSettings()).astype(np.float16))


def test_fit_length_repeat_zero_cut_empty():
    wave = np.array([1, 2, 3], np.float32)
    assert fit_length(wave, 7, "repeat").tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert fit_length(wave, 7, "zero").tolist() == [1, 2, 3, 0, 0, 0, 0]
    assert fit_length(wave, 2, "repeat").tolist() == [1, 2]
    assert fit_length(np.zeros(0, np.float32), 4, "repeat").tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="audio_pad"):
        fit_length(wave, 7, "mirror")


def test_short_clip_repeated_or_zero_padded(bad):
    """0.3 s of audio brought to 3 s: repeated audio fills every STFT frame, zero padding leaves silence."""
    silence = np.float16(np.log(1e-7))
    repeat = npy(run_chain(bad["short"])["spectrogram"]["spec.npy"])
    zero = npy(run_chain(bad["short"], spec=SpectrogramSettings(audio_seconds=3, audio_pad="zero"))
               ["spectrogram"]["spec.npy"])
    assert repeat.shape == zero.shape == (257, 299)
    assert not np.any(np.all(repeat == silence, axis=0))
    assert np.all(zero[:, 50:] == silence) and not np.all(zero[:, :20] == silence)


# ---- bad input and ffmpeg plumbing ----

def test_every_bad_input_gives_a_result_or_a_one_line_clip_error(bad):
    for name, path in bad.items():
        try:
            inputs = run_chain(path)
        except ClipError as e:
            assert e.stage == BAD_INPUT_FAILS[name], f"{name}: failed in {e.stage}: {e.reason}"
            assert e.reason and "\n" not in e.reason and str(path.parent) not in e.reason
            continue
        assert BAD_INPUT_FAILS[name] is None, f"{name} should have failed in {BAD_INPUT_FAILS[name]}"
        assert len(inputs["frames"]) >= 1
        assert npy(inputs["spectrogram"]["spec.npy"]).shape == (257, 299)


def test_probe_facts_and_ffmpeg_reasons(bad):
    assert probe(bad["audio_only"])["has_video"] is False
    assert probe(bad["no_audio"])["has_audio"] is False
    assert probe(bad["short"])["duration"] == pytest.approx(0.3, abs=0.05)
    for name in ("zero_bytes", "truncated", "random_bytes"):
        with pytest.raises(ClipError, match="ffmpeg: Invalid data found when processing input"):
            probe_stage(bad[name], {}, None, 30)
    assert [layout_channels(x) for x in ("mono", "stereo", "5.1(side)", "7.1", "6 channels")] == [1, 2, 6, 8, 6]


def test_timeout_is_a_clip_error(bad):
    with pytest.raises(ClipError, match="timed out"):
        frames_stage(bad["space"], {}, ORIGINAL, 0.001)


def test_rq_ffmpeg_is_read_on_every_call(bad, tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "ffmpeg-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{ffmpeg_binary()}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("RQ_FFMPEG", str(wrapper))
    run_chain(bad["leading_dash"])
    calls = log.read_text().splitlines()
    assert len(calls) == 3  # probe, frames, audio; the spectrogram never runs ffmpeg
    assert all(f"file:{os.path.abspath(bad['leading_dash'])}" in call for call in calls)
    assert "-vn" in calls[2] and "0:V" not in calls[2], "audio decoding decodes no video"
    monkeypatch.setenv("RQ_FFMPEG", str(tmp_path / "missing"))
    with pytest.raises(FfmpegMissing, match="RQ_FFMPEG"):
        probe_stage(bad["space"], {}, None, 30)
