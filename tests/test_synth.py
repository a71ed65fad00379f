"""`rq synth` writes the real raw layouts with learnable, controllable signals; `rq doctor` reports ffmpeg."""
import csv
import io
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from rq.manifests import CREMAD_EMOTIONS, read_class_list
from rq.pipeline.stages.audio import audio_stage
from rq.pipeline.stages.frames import frames_stage
from rq.pipeline.stages.probe import probe_stage
from rq.pipeline.stages.settings import AudioDecodeSettings, FrameSettings
from rq.pipeline.synth import class_picture, class_tone

TINY = ("--seconds", 1, "--size", "64x48", "--workers", 2)


def synth(rq, out: Path, *args):
    result = rq("synth", "--out", out, *TINY, *args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "synth.json").read_text())


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def probe(path: Path) -> dict:
    return probe_stage(path, {}, None, 30)[1]


def pitch(path: Path) -> float:
    """The strongest frequency of a file's decoded audio (Hz)."""
    wave = np.load(io.BytesIO(audio_stage(path, {}, AudioDecodeSettings(), 30)["audio.npy"]))
    return float(np.argmax(np.abs(np.fft.rfft(wave))) * 16000 / wave.size)


def box_color(path: Path) -> np.ndarray:
    """Mean BGR of the pixels that differ from the grey background in the first frame."""
    jpg = frames_stage(path, {}, FrameSettings(frame_size=0), 30)[0]["f0000.jpg"]
    image = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).reshape(-1, 3).astype(float)
    return image[np.abs(image - 64).max(axis=1) > 40].mean(axis=0)


@pytest.fixture(scope="module")
def kinetics(tmp_path_factory):
    """One clean kinetics synth (every signal its own class's, no noise) shared by the layout tests."""
    from typer.testing import CliRunner
    from rq import cli
    out = tmp_path_factory.mktemp("kinetics") / "raw"
    result = CliRunner().invoke(cli.app, [str(a) for a in ("synth", "--preset", "kinetics", "--out", out, "--clips", 6,
                                          "--classes", 3, *TINY, "--audio-informative", 1, "--visual-informative", 1,
                                          "--audio-noise", 0, "--visual-noise", 0)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "synth.json").read_text())


def test_kinetics_layout_and_annotations(kinetics):
    out, listing = kinetics
    names = read_class_list()[:3]
    rows = []
    for split in ("train", "val"):
        with open(out / "annotations" / f"{split}.csv", newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == ["label", "youtube_id", "time_start", "time_end", "split"]
            rows += list(reader)
    assert len(rows) == 6 and {r["label"] for r in rows} == set(names)
    assert sorted(r["split"] for r in rows) == ["train"] * 3 + ["val"] * 3  # 2 clips per class, the last in val
    for r in rows:
        clip = out / r["split"] / f"{r['youtube_id']}_{int(r['time_start']):06d}_{int(r['time_end']):06d}.mp4"
        assert clip.is_file() and re.fullmatch(r"[A-Za-z0-9_-]{11}", r["youtube_id"])
        info = probe(clip)
        assert (info["video_codec"], info["audio_codec"], info["width"], info["height"]) == ("h264", "aac", 64, 48)
        assert info["duration"] == pytest.approx(1.0, abs=0.05)
    assert sorted(c["video"] for c in listing["clips"]) == sorted(
        str(p.relative_to(out)) for p in out.glob("*/*.mp4"))


def test_each_class_has_its_own_sound_and_picture(kinetics):
    out, listing = kinetics
    for clip in listing["clips"]:
        video = out / clip["video"]
        expected_pitch = class_tone(clip["label"])[0] * clip["pitch"]
        assert pitch(video) == pytest.approx(expected_pitch, abs=6)
        rgb = int(class_picture(clip["label"])["color"][2:], 16)
        expected_bgr = np.array([rgb & 255, (rgb >> 8) & 255, rgb >> 16], float)
        assert np.abs(box_color(video) - expected_bgr).max() < 30, clip["video"]


def test_motion_cue_draws_the_box_colour_at_random(rq, tmp_path):
    listing = synth(rq, tmp_path / "raw", "--preset", "kinetics", "--clips", 8, "--classes", 1,
                    "--visual-informative", 1, "--visual-noise", 0, "--visual-cue", "motion")
    colours = [box_color(tmp_path / "raw" / clip["video"]) for clip in listing["clips"]]
    # one class, so the "colour" cue would give 8 boxes of one colour; "motion" varies it per clip
    assert max(np.abs(c - colours[0]).max() for c in colours) > 60


def test_visual_contrast_fades_the_box_toward_the_background(rq, tmp_path):
    listing = synth(rq, tmp_path / "raw", "--preset", "kinetics", "--clips", 2, "--classes", 1,
                    "--visual-informative", 1, "--visual-noise", 0, "--visual-contrast", 0.5)
    rgb = int(class_picture(0)["color"][2:], 16)
    full = np.array([rgb & 255, (rgb >> 8) & 255, rgb >> 16], float)
    expected = 64 + 0.5 * (full - 64)   # halfway between the grey background (0x40) and the class colour
    for clip in listing["clips"]:
        image = cv2.imdecode(np.frombuffer(frames_stage(tmp_path / "raw" / clip["video"], {}, FrameSettings(frame_size=0),
                                                        30)[0]["f0000.jpg"], np.uint8), cv2.IMREAD_COLOR).reshape(-1, 3).astype(float)
        box = image[np.abs(image - expected).max(axis=1) < 20]
        assert len(box) > 0.05 * len(image), clip["video"]   # the faded box is there, in its faded colour


def test_uninformative_audio_carries_another_class(rq, tmp_path):
    listing = synth(rq, tmp_path / "raw", "--preset", "kinetics", "--clips", 4, "--classes", 2,
                    "--audio-informative", 0, "--audio-noise", 0)
    for clip in listing["clips"]:
        assert clip["audio_class"] != clip["label"]
        assert pitch(tmp_path / "raw" / clip["video"]) == pytest.approx(
            class_tone(clip["audio_class"])[0] * clip["pitch"], abs=6)


def test_cremad_layout(rq, tmp_path):
    out = tmp_path / "raw"
    listing = synth(rq, out, "--preset", "cremad", "--clips", 6, "--classes", 6)
    stems = {p.stem for p in (out / "VideoFlash").glob("*.flv")}
    assert stems == {p.stem for p in (out / "AudioWAV").glob("*.wav")} and len(stems) == 6
    pattern = rf"10\d\d_[A-Z]{{3}}_({'|'.join(CREMAD_EMOTIONS)})_(LO|MD|HI|XX)"
    assert all(re.fullmatch(pattern, s) for s in stems)
    assert {s.split("_")[2] for s in stems} == set(CREMAD_EMOTIONS)
    stem = sorted(stems)[0]
    video, wav = probe(out / "VideoFlash" / f"{stem}.flv"), probe(out / "AudioWAV" / f"{stem}.wav")
    assert video["video_codec"] == "flv1" and video["has_audio"]
    assert (wav["has_video"], wav["sample_rate"], wav["channels"]) == (False, 16000, 1)
    assert 0.8 <= wav["duration"] <= 1.2  # each clip 80-120% of --seconds
    assert [c["label_name"] for c in listing["clips"]] == [c["video"].split("_")[2] for c in listing["clips"]]


def test_same_seed_same_files_other_seed_other_files(rq, tmp_path):
    args = ("--preset", "cremad", "--clips", 3, "--classes", 3)
    synth(rq, tmp_path / "a", *args, "--seed", 7)
    synth(rq, tmp_path / "b", *args, "--seed", 7, "--workers", 1)
    synth(rq, tmp_path / "c", *args, "--seed", 8)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


def test_force_replaces_only_what_synth_wrote(rq, tmp_path):
    out = tmp_path / "raw"
    synth(rq, out, "--preset", "kinetics", "--clips", 2, "--classes", 1)
    (out / "notes.txt").write_text("mine")
    again = rq("synth", "--out", out, "--preset", "kinetics", "--clips", 2, "--classes", 1, *TINY)
    assert again.exit_code == 2 and "not empty" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    listing = synth(rq, out, "--preset", "kinetics", "--clips", 2, "--classes", 1, "--seed", 3, "--force")
    assert sorted(str(p.relative_to(out)) for p in out.glob("*/*.mp4")) == sorted(c["video"] for c in listing["clips"])
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args, message", [
    ((), "needs --preset"),
    (("--preset", "ucf101"), "--preset must be one of"),
    (("--preset", "cremad", "--classes", 7), "--classes must be 1..6"),
    (("--preset", "kinetics", "--size", "65x48"), "--size must be even"),
    (("--preset", "kinetics", "--audio-noise", 2), "--audio-noise must be in 0..1"),
])
def test_usage_errors_are_one_line_exit_2(rq, tmp_path, args, message):
    result = rq("synth", "--out", tmp_path / "raw", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "raw").exists()


def test_help_texts_and_doctor(rq):
    help_text = rq("synth", "--help").output
    for option in ("--preset", "--out", "--clips", "--classes", "--seconds", "--seed", "--size", "--fps",
                   "--audio-informative", "--visual-informative", "--audio-noise", "--visual-noise",
                   "--val-fraction", "--workers", "--force"):
        assert option in help_text
    doctor = rq("doctor")
    assert doctor.exit_code == 0
    assert re.search(r"ffmpeg from:\s+(\$RQ_FFMPEG|PATH|imageio-ffmpeg)", doctor.stdout)
    assert re.search(r"ffmpeg version:\s+ffmpeg version \S+", doctor.stdout)
    assert re.search(r"CPU cores:\s+\d+", doctor.stdout)


def first_frame(path: Path) -> np.ndarray:
    jpg = frames_stage(path, {}, FrameSettings(frame_size=0), 30)[0]["f0000.jpg"]
    return cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).astype(float)


def test_corruption_knobs_corrupt_an_exact_share_of_each_split(rq, tmp_path):
    out = tmp_path / "raw"
    listing = synth(rq, out, "--preset", "kinetics", "--clips", 8, "--classes", 1, "--val-fraction", 0.5,
                    "--audio-informative", 1, "--visual-informative", 1, "--audio-noise", 0, "--visual-noise", 0,
                    "--audio-corrupt", 0.5, "--audio-corruption", "noise,silence",
                    "--visual-corrupt", 0.5, "--visual-corruption", "blur,occlusion")
    clips = listing["clips"]
    for split in ("train", "val"):   # 4 clips each: exactly 2 with corrupted sound, the 2 others a corrupted picture
        assert sum(bool(c["audio_corruption"]) for c in clips if c["split"] == split) == 2
        assert sum(bool(c["visual_corruption"]) for c in clips if c["split"] == split) == 2
    assert not any(c["audio_corruption"] and c["visual_corruption"] for c in clips)
    kinds = {c["audio_corruption"] or c["visual_corruption"] for c in clips}
    assert kinds == {"noise", "silence", "blur", "occlusion"}
    tone = class_tone(0)[0]
    sharpness = {}
    for clip in clips:
        video = out / clip["video"]
        wave = np.load(io.BytesIO(audio_stage(video, {}, AudioDecodeSettings(), 30)["audio.npy"]))
        rms = float(np.sqrt(np.mean(wave ** 2)))
        if clip["audio_corruption"] == "silence":
            assert rms < 1e-3
        elif clip["audio_corruption"] == "noise":   # as loud as the tone, but no tone in it
            assert rms > 0.1 and abs(pitch(video) - tone * clip["pitch"]) > 50
        else:
            assert pitch(video) == pytest.approx(tone * clip["pitch"], abs=6)
        image = first_frame(video)
        h, w = image.shape[:2]
        if clip["visual_corruption"] == "occlusion":   # the middle is the background grey
            middle = image[round(0.15 * h):round(0.85 * h), round(0.15 * w):round(0.85 * w)]
            assert np.abs(middle - 64).max() < 12
        sharpness[clip["visual_corruption"]] = min(sharpness.get(clip["visual_corruption"], 1e9),
                                                   cv2.Laplacian(image.mean(axis=2), cv2.CV_64F).var())
    assert sharpness["blur"] < 0.3 * sharpness[""]   # the box's edges are smeared


def test_corruption_usage_errors(rq, tmp_path):
    for args, message in ((("--audio-corrupt", 0.6, "--visual-corrupt", 0.6), "exceed 1"),
                          (("--audio-corruption", "noise,crackle"), "--audio-corruption must be")):
        result = rq("synth", "--out", tmp_path / "raw", "--preset", "kinetics", *args)
        assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
