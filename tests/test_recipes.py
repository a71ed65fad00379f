"""The recipes on tiny raw layouts: what each finds (clips, splits, labels, unmatched files and
annotations), and the kinetics and cremad recipes end to end through `rq preprocess`."""
import io
import json
import shutil

import numpy as np
import pytest
import webdataset as wds

from conftest import lay_out
from rq.manifests import CREMAD_EMOTIONS, read_class_list
from media import make_clip, make_wav
from rq.pipeline.manifest import read_jsonl, read_manifest
from rq.pipeline.recipes import LayoutError, RecipeOptions, cremad, folder, kinetics

KS = read_class_list()
CSV_HEADER = "label,youtube_id,time_start,time_end,split\n"


def kinetics_raw(root, bank, csv_dir="annotations"):
    """train: 2 Kinetics-Sounds clips (one id with _ and -), 1 clip of another class, 1 file without a row,
    1 row without a file; val: 1 clip in a class sub-folder."""
    raw = lay_out(root, bank, {"train/x_y-1Z_000004_000014.mp4": 0, "train/bowl01_000000_000010.mp4": 1,
                               "train/abs01_000000_000010.mp4": 2, "train/stray_000000_000010.mp4": 3,
                               "val/bowling/v1_000030_000040.mp4": 4})
    (raw / csv_dir).mkdir(exist_ok=True)
    (raw / csv_dir / "train.csv").write_text(CSV_HEADER + "playing piano,x_y-1Z,4,14,train\nbowling,bowl01,0,10,train\n"
                                             "abseiling,abs01,0,10,train\n\"playing piano\",gone01,0,10,train\n")
    (raw / csv_dir / "val.csv").write_text(CSV_HEADER + "bowling,v1,30,40,val\n")
    return raw


def test_kinetics_discovery(tmp_path, clip_bank):
    found = kinetics.discover(kinetics_raw(tmp_path / "raw", clip_bank), RecipeOptions())
    assert found.classes == tuple(KS) and len(KS) == 31
    assert {(c.clip_id, c.split, c.label_name, c.label) for c in found.clips} == {
        ("x_y-1Z_000004_000014", "train", "playing piano", KS.index("playing piano")),
        ("bowl01_000000_000010", "train", "bowling", KS.index("bowling")),
        ("v1_000030_000040", "test", "bowling", KS.index("bowling"))}
    assert {(r.source, r.reason) for r in found.rejected} == {
        ("train/gone01_000000_000010.mp4", "annotated, but there is no such file"),
        ("train/stray_000000_000010.mp4", "not in the annotations")}
    assert found.other_classes == 1
    # the same CSVs directly under the raw folder
    flat = kinetics.discover(kinetics_raw(tmp_path / "flat", clip_bank, csv_dir="."), RecipeOptions())
    assert [c.clip_id for c in flat.clips] == [c.clip_id for c in found.clips]


def test_kinetics_split_lists(tmp_path, clip_bank):
    raw = kinetics_raw(tmp_path / "raw", clip_bank)
    shutil.rmtree(raw / "annotations")
    (tmp_path / "my_train.txt").write_text("x_y-1Z_000004_000014,10,playing piano\nbowl01_000000_000010,10,6\n")
    (tmp_path / "list.txt").write_text("v1_000030_000040 bowling\n")
    found = kinetics.discover(raw, RecipeOptions(split_lists=(str(tmp_path / "my_train.txt"),
                                                              f"test={tmp_path / 'list.txt'}")))
    assert {(c.clip_id, c.split, c.label_name) for c in found.clips} == {
        ("x_y-1Z_000004_000014", "train", "playing piano"), ("bowl01_000000_000010", "train", KS[6]),
        ("v1_000030_000040", "test", "bowling")}
    assert {r.source for r in found.rejected} == {"train/abs01_000000_000010.mp4", "train/stray_000000_000010.mp4"}
    with pytest.raises(LayoutError, match="cannot tell its split"):
        kinetics.discover(raw, RecipeOptions(split_lists=(str(tmp_path / "list.txt"),)))
    with pytest.raises(LayoutError, match="no annotations/train.csv"):
        kinetics.discover(raw, RecipeOptions())


def test_kinetics_end_to_end(rq, tmp_path, clip_bank):
    raw, out = kinetics_raw(tmp_path / "raw", clip_bank), tmp_path / "out"
    result = rq("preprocess", "kinetics", "--raw", raw, "--out", out, "--workers", "1", "--frame-size", "32")
    assert result.exit_code == 0, result.stderr
    manifest = read_manifest(out)
    # only the classes that have clips, in the list's order; the 29 others named in one warning
    kept = [c for c in KS if c in ("bowling", "playing piano")]
    assert manifest["recipe"] == "kinetics" and manifest["frames_per_clip"] == 3 and manifest["classes"] == kept
    warning = [line for line in result.stderr.splitlines() if "listed classes have no clips" in line]
    assert len(warning) == 1 and "29 of the 31" in warning[0] and "blowing nose" in warning[0]
    assert manifest["totals"] | {"bytes": 0} == {"clips": 3, "samples": 3, "skipped": 0, "unmatched": 2, "bytes": 0}
    # one train clip per class: 10% of one rounds to none, so val is empty
    assert {k: v["samples"] for k, v in manifest["splits"].items()} == {"train": 2, "val": 0, "test": 1}
    sample = next(iter(wds.WebDataset(str(out / "test-000000.tar"), shardshuffle=False)))
    meta = json.loads(sample["json"])
    assert meta["source"] == "val/bowling/v1_000030_000040.mp4" and meta["audio_seconds"] == 10.0
    assert np.load(io.BytesIO(sample["spec.npy"])).shape == (257, 1004)  # 10 s at 16 kHz, 1.2 s repeated
    failures = read_jsonl(out / "failures.jsonl")
    assert [(f["source"], f["stage"]) for f in failures] == [("train/gone01_000000_000010.mp4", "discover"),
                                                             ("train/stray_000000_000010.mp4", "discover")]


def cremad_names(actors=range(1001, 1011)):
    return [f"{a}_{s}_{e}_XX" for a in actors for s, e in (("DFA", "ANG"), ("IEO", "HAP"), ("TIE", "SAD"))]


def test_cremad_discovery_and_speaker_split(tmp_path):
    raw = tmp_path / "raw"
    (raw / "VideoFlash").mkdir(parents=True)
    (raw / "AudioWAV").mkdir()
    for name in cremad_names():  # discovery reads names only
        (raw / "VideoFlash" / f"{name}.flv").touch()
        (raw / "AudioWAV" / f"{name}.wav").touch()
    (raw / "VideoFlash" / "1020_DFA_NEU_XX.flv").touch()
    (raw / "AudioWAV" / "1021_DFA_NEU_XX.wav").touch()
    (raw / "VideoFlash" / "1022_DFA_BOR_XX.flv").touch()
    (raw / "AudioWAV" / "1022_DFA_BOR_XX.wav").touch()
    found = cremad.discover(raw, RecipeOptions(split="speaker", test_fraction=0.3))
    assert found.classes == CREMAD_EMOTIONS and len(found.clips) == 30
    assert {(r.source, r.reason.split()[0]) for r in found.rejected} == {
        ("VideoFlash/1020_DFA_NEU_XX.flv", "no"), ("AudioWAV/1021_DFA_NEU_XX.wav", "no"),
        ("VideoFlash/1022_DFA_BOR_XX.flv", "third")}
    clip = found.clips[0]
    assert clip.audio_source.name == f"{clip.clip_id}.wav" and clip.label_name == clip.clip_id.split("_")[2]
    actors = {split: {c.clip_id[:4] for c in found.clips if c.split == split} for split in ("train", "test")}
    assert actors["train"] and actors["test"] and not actors["train"] & actors["test"]
    by_clip = cremad.discover(raw, RecipeOptions(test_fraction=0.3))
    assert by_clip.clips != found.clips and {c.split for c in by_clip.clips} == {"train", "test"}
    (tmp_path / "test.csv").write_text("1001_DFA_ANG_XX,ANG\n1002_IEO_HAP_XX,HAP\n")
    (tmp_path / "train.csv").write_text("".join(f"{n},{n.split('_')[2]}\n" for n in cremad_names(range(1003, 1011))))
    listed = cremad.discover(raw, RecipeOptions(split_lists=(str(tmp_path / "train.csv"), str(tmp_path / "test.csv"))))
    assert [c.clip_id for c in listed.clips if c.split == "test"] == ["1001_DFA_ANG_XX", "1002_IEO_HAP_XX"]
    assert len([c for c in listed.clips if c.split == "train"]) == 24
    assert sum(r.reason == "not in any --split-list" for r in listed.rejected) == 4


def test_cremad_end_to_end_audio_from_the_wav(rq, tmp_path, ffmpeg_log):
    raw, out = tmp_path / "raw", tmp_path / "out"
    (raw / "VideoFlash").mkdir(parents=True)
    (raw / "AudioWAV").mkdir()
    names = ["1001_DFA_ANG_XX", "1002_IEO_HAP_LO"]
    for name in names:  # the flv sounds at 440 Hz, the wav at 2 kHz: the spectrogram must show 2 kHz
        make_clip(raw / "VideoFlash" / f"{name}.flv", seconds=1.2, size=(64, 48), fps=10, tone_hz=440)
        make_wav(raw / "AudioWAV" / f"{name}.wav", seconds=1.2, tone_hz=2000)
    ffmpeg_log.clear()
    result = rq("preprocess", "cremad", "--raw", raw, "--out", out, "--workers", "1", "--test-fraction", "0.5",
                "--frame-size", "32")
    assert result.exit_code == 0, result.stderr
    # per clip one run on the flv (probe + frames, its audio untouched) and one on the wav (audio)
    audio_calls = [c for c in ffmpeg_log.calls() if "f32le" in c]
    assert len(audio_calls) == 2 and all(".wav" in c for c in audio_calls)
    assert len(ffmpeg_log.calls()) == 4 and all(".flv" in c for c in ffmpeg_log.calls() if c not in audio_calls)
    manifest = read_manifest(out)
    assert manifest["frames_per_clip"] == 1 and manifest["classes"] == ["HAP", "ANG"]  # the emotions with clips
    urls = [str(out / s["name"]) for split in manifest["splits"].values() for s in split["shards"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert sorted(json.loads(s["json"])["clip_id"] for s in samples) == names
    for s in samples:
        meta = json.loads(s["json"])
        assert meta["audio_source"] == f"AudioWAV/{meta['clip_id']}.wav" and meta["label_name"] == meta["clip_id"][9:12]
        spec = np.load(io.BytesIO(s["spec.npy"])).astype(np.float32)
        assert spec.shape == (257, 299)  # 3 s at 16 kHz
        assert abs(spec.mean(axis=1).argmax() * 16000 / 512 - 2000) < 100


def test_folder_discovery_class_layout(tmp_path):
    raw = tmp_path / "raw"
    for cls in ("dog", "cat", ".hidden"):
        (raw / cls).mkdir(parents=True)
        for i in range(10):
            (raw / cls / f"{cls}{i}.mkv").touch()
    (raw / "dog" / "README.txt").touch()
    found = folder.discover(raw, RecipeOptions(test_fraction=0.3, seed=3))
    assert found.classes == ("cat", "dog") and len(found.clips) == 20
    assert [(r.source, r.reason) for r in found.rejected] == [("dog/README.txt", "not a video file extension (.txt)")]
    splits = [c.split for c in found.clips]
    assert 0 < splits.count("test") < 20
    assert splits == [c.split for c in folder.discover(raw, RecipeOptions(test_fraction=0.3, seed=3)).clips]
    (tmp_path / "classes.txt").write_text("dog\n")
    only_dogs = folder.discover(raw, RecipeOptions(classes=tmp_path / "classes.txt"))
    assert {c.label_name for c in only_dogs.clips} == {"dog"} and only_dogs.other_classes == 10
