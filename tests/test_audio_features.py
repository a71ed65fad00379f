"""The audio front ends of `rq preprocess --audio-features` (issue 8): the released code's CREMA-D STFT
against librosa, its Kinetics-Sounds filter bank against values torchaudio's own fbank computed
(tests/fixtures/make_fbank_reference.py), the settings each resolves to, and that switching front ends
recomputes only what depends on them while the default stays the paper-text STFT, cache keys included."""
import io
import json
import tarfile
from pathlib import Path

import librosa
import numpy as np
import pytest

from media import rich_waveform
from rq.pipeline.manifest import read_manifest
from rq.pipeline.stages import fbank
from rq.pipeline.stages.frontends import resolve
from rq.pipeline.stages.settings import AudioDecodeSettings, SpectrogramSettings, canonical
from rq.pipeline.stages.spectrogram import audio_features, fit_length

REFERENCE = Path(__file__).parent / "fixtures" / "ks_fbank_reference.npz"


def shard_specs(out: Path) -> dict[str, np.ndarray]:
    """Every spectrogram in the shards of `out`, by member name."""
    specs = {}
    for path in sorted(out.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".spec.npy"):
                    specs[member.name] = np.load(io.BytesIO(tar.extractfile(member).read()), allow_pickle=False)
    return specs


# ---- the front ends against independent implementations ----

@pytest.mark.parametrize("seconds", [1.5, 4.0])   # tiled x3 then cut, and cut only
def test_cremad_official_matches_librosa_to_fp16(seconds):
    wave = 2.5 * rich_waveform(seconds, 22050)    # peaks beyond +-1, so the clipping matters
    _, settings = resolve("cremad-official", 3.0)
    ours = audio_features(fit_length(wave, 66150, settings.audio_pad), 22050, settings).astype(np.float16)
    # The released CramedDataset, step by step (librosa.stft's default centring: zero padding).
    released = np.tile(wave, 3)[:22050 * 3]
    released[released > 1.0] = 1.0
    released[released < -1.0] = -1.0
    magnitude = np.abs(librosa.stft(released, n_fft=512, hop_length=353))
    ref = np.log(magnitude + 1e-7)
    assert ours.shape == ref.shape == (257, 188)
    # Where a bin nearly cancels (|X| 1e-5 of the loudest, and not the exact zeros of the silent gap), both
    # float32 FFTs keep only rounding: such bins are rare and left out of the comparison.
    rounding = (magnitude > 0) & (magnitude < 1e-5 * magnitude.max())
    assert rounding.mean() < 1e-3
    np.testing.assert_allclose(ours.astype(np.float32)[~rounding], ref[~rounding], rtol=2 ** -10, atol=2e-3)


def test_ks_fbank_matches_torchaudio_kaldi_fbank():
    ref = np.load(REFERENCE)
    wave = rich_waveform(float(ref["seconds"]), int(ref["rate"]))
    # the waveform the reference was made from, regenerated here
    assert np.float64(wave).sum() == pytest.approx(float(ref["wave_sum"]), rel=1e-12)
    assert np.square(np.float64(wave)).sum() == pytest.approx(float(ref["wave_sum_squares"]), rel=1e-12)
    _, settings = resolve("ks-fbank", 10.0)
    ours = audio_features(wave, int(ref["rate"]), settings)
    assert ours.shape == (1024, 128) and ours.dtype == np.float32
    n, stride = int(ref["n_frames"]), int(ref["stride"])
    assert n == 1 + (wave.size - 400) // 160
    np.testing.assert_allclose(ours[:n:stride], ref["frames"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours[n:], np.broadcast_to(ref["pad_row"], (1024 - n, 128)), rtol=0, atol=1e-6)
    # the empty lowest bins and the silent gap sit on the log floor in both
    floor = (np.log(fbank.LOG_FLOOR) - fbank.NORM_MEAN) / (2 * fbank.NORM_STD)
    assert np.all(np.isclose(ref["frames"], floor, atol=1e-6) == np.isclose(ours[:n:stride], floor, atol=1e-6))


def test_ks_fbank_cuts_long_audio_to_1024_frames():
    wave = rich_waveform(12.0, 16000)   # 1,198 frames
    feats = fbank.log_mel(wave, 16000, 400, 160, 512)
    out = fbank.kinetics_fbank(wave, 16000, 400, 160, 512)
    assert feats.shape == (1198, 128) and out.shape == (1024, 128)
    np.testing.assert_allclose(out, (feats[:1024] - fbank.NORM_MEAN) / (2 * fbank.NORM_STD), atol=1e-6)
    short = fbank.kinetics_fbank(wave[:399], 16000, 400, 160, 512)   # not one whole 25 ms frame
    assert np.allclose(short, -fbank.NORM_MEAN / (2 * fbank.NORM_STD))


# ---- settings: what each front end resolves to, and the cache key of the default ----

def test_front_ends_resolve_their_defaults_unless_given():
    assert resolve("stft", 10.0) == (AudioDecodeSettings(16000), SpectrogramSettings())
    assert resolve("stft", 3.0, n_fft=400, hop_length=160)[1] == SpectrogramSettings(3.0, "repeat", 400, 400, 160)
    audio, spec = resolve("cremad-official", 10.0)
    assert audio.sample_rate == 22050 and (spec.audio_seconds, spec.n_fft, spec.hop_length) == (3.0, 512, 353)
    assert resolve("cremad-official", 10.0, sample_rate=16000, audio_seconds=2.0)[0].sample_rate == 16000
    audio, spec = resolve("ks-fbank", 10.0, missing_audio="silence")
    assert audio == AudioDecodeSettings(16000, "silence") and spec.audio_seconds is None
    assert (spec.win_length, spec.hop_length, spec.n_fft) == (400, 160, 512) == fbank.frame_sizes(16000)
    assert fbank.frame_sizes(22050) == (551, 220, 1024)
    with pytest.raises(ValueError, match="stft front end"):
        resolve("ks-fbank", 10.0, hop_length=160)
    with pytest.raises(ValueError, match="must be one of stft, cremad-official, ks-fbank"):
        resolve("mel", 10.0)
    with pytest.raises(ValueError, match="shorter than one STFT window"):
        resolve("ks-fbank", 10.0, audio_seconds=0.02)


def test_default_settings_keep_the_cache_key_they_had_before_front_ends():
    # the canonical text of SpectrogramSettings() before the audio_features field existed: entries cached
    # then stay valid, so a default run after upgrading recomputes nothing
    before = '{"audio_pad":"repeat","audio_seconds":10.0,"eps":1e-07,"hop_length":159,"n_fft":512,"win_length":512}'
    assert canonical(SpectrogramSettings()) == before
    assert canonical(SpectrogramSettings(hop_length=160)) == before.replace("159", "160")
    assert '"audio_features":"ks-fbank"' in canonical(resolve("ks-fbank", 10.0)[1])


# ---- through `rq preprocess` on generated clips ----

def test_switching_front_ends_recomputes_only_what_depends_on_them(rq, folder_raw, tmp_path, ffmpeg_log):
    out = tmp_path / "out"

    def preprocess(*extra):
        result = rq("preprocess", "folder", "--raw", folder_raw, "--out", out, "--workers", "2",
                    "--frame-size", "32", *extra)
        assert result.exit_code == 0, result.stderr
        return read_manifest(out)["config"]

    config = preprocess("--audio-seconds", "1")
    assert "audio_features" not in config["spectrogram"]   # the default's manifest, as before the option
    stft = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    assert {s.shape for s in shard_specs(out).values()} == {(257, 98)}
    ffmpeg_log.clear()

    config = preprocess("--audio-features", "ks-fbank")
    assert ffmpeg_log.calls() == []   # same 16 kHz waveform, cached: only the filter bank ran
    assert config["spectrogram"]["audio_features"] == "ks-fbank" and config["spectrogram"]["audio_seconds"] is None
    specs = shard_specs(out)
    assert len(specs) == 8 and {(s.shape, s.dtype) for s in specs.values()} == {((1024, 128), np.dtype(np.float16))}

    preprocess("--audio-seconds", "1")   # back to the default: every stage cached, the same shards
    assert ffmpeg_log.calls() == []
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == stft

    config = preprocess("--audio-features", "cremad-official")
    calls = ffmpeg_log.calls()   # 22,050 Hz: the audio alone is decoded again, never the video
    assert len(calls) == 8 and all("-ar 22050" in c and "-vn" in c and "0:V" not in c for c in calls), calls
    assert config["audio"]["sample_rate"] == 22050 and config["spectrogram"]["hop_length"] == 353
    assert {s.shape for s in shard_specs(out).values()} == {(257, 188)}
    with tarfile.open(out / read_manifest(out)["splits"]["test"]["shards"][0]["name"]) as tar:   # a new generation
        meta = json.loads(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith(".json"))).read())
    assert meta["sample_rate"] == 22050 and meta["audio_seconds"] == 3.0


def test_front_end_usage_errors_are_one_line_exit_2(rq, folder_raw, tmp_path):
    for extra, text in ((("--audio-features", "mel"), "--audio-features must be one of"),
                        (("--audio-features", "cremad-official", "--n-fft", "1024"), "stft front end")):
        result = rq("preprocess", "folder", "--raw", folder_raw, "--out", tmp_path / "o", *extra)
        assert result.exit_code == 2 and text in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    helped = rq("preprocess", "folder", "--help").stdout
    assert all(name in helped for name in ("stft", "cremad-official", "ks-fbank", "1024x128", "257x188"))
