"""Annotation and class files as editors and other tools write them (issue 10, point 7): byte-order
marks are accepted, conflicting and cross-split duplicate rows are reported and their clip left out,
an empty or header-only annotation file is a usage error. Real files, real clips, `rq preprocess`."""
import codecs

import pytest

from conftest import lay_out
from rq.pipeline.manifest import read_jsonl, read_manifest
from rq.pipeline.recipes import RecipeOptions, cremad

HEADER = "label,youtube_id,time_start,time_end,split\n"
SMALL = ("--audio-seconds", "1", "--frame-size", "32", "--workers", "1")


def kinetics(tmp_path, bank, train_rows: str, val_rows: str, bom: bool = False):
    raw = lay_out(tmp_path / "raw", bank, {"train/a_000000_000010.mp4": 0, "train/b_000000_000010.mp4": 1,
                                           "train/c_000000_000010.mp4": 2, "val/d_000000_000010.mp4": 3})
    (raw / "annotations").mkdir()
    mark = codecs.BOM_UTF8 if bom else b""
    (raw / "annotations" / "train.csv").write_bytes(mark + (HEADER + train_rows).encode())
    (raw / "annotations" / "val.csv").write_bytes(mark + (HEADER + val_rows).encode())
    return raw


def test_byte_order_marks_in_class_lists_and_csvs_are_accepted(rq, clip_bank, tmp_path):
    raw = kinetics(tmp_path, clip_bank, "bowling,a,0,10,train\nsneezing,b,0,10,train\n", "bowling,d,0,10,val\n",
                   bom=True)
    classes = tmp_path / "classes.txt"
    classes.write_bytes(codecs.BOM_UTF8 + b"bowling\nsneezing\n")   # as Notepad saves it
    out = tmp_path / "out"
    result = rq("preprocess", "kinetics", "--raw", raw, "--out", out, "--classes", classes, *SMALL)
    assert result.exit_code == 0, result.stderr
    manifest = read_manifest(out)
    assert manifest["classes"] == ["bowling", "sneezing"]
    assert {k: v["samples"] for k, v in manifest["splits"].items()} == {"train": 2, "val": 0, "test": 1}


def test_conflicting_and_cross_split_duplicates_are_reported_and_left_out(rq, clip_bank, tmp_path):
    raw = kinetics(tmp_path, clip_bank,
                   "bowling,a,0,10,train\nsneezing,a,0,10,train\n"      # a: two labels
                   "bowling,b,0,10,train\nbowling,b,0,10,train\n"       # b: the same row twice (harmless)
                   "bowling,c,0,10,train\n",                            # c: also in val
                   "bowling,c,0,10,val\nbowling,d,0,10,val\n")
    out = tmp_path / "out"
    result = rq("preprocess", "kinetics", "--raw", raw, "--out", out, *SMALL)
    assert result.exit_code == 0, result.stderr
    assert {(f["source"], f["stage"], f["reason"]) for f in read_jsonl(out / "failures.jsonl")} == {
        ("a_000000_000010", "discover", "annotations/train.csv gives it 2 labels (bowling, sneezing): left out"),
        ("c_000000_000010", "discover", "annotated in both train and val: left out")}
    assert [row["clip_id"] for row in read_jsonl(out / "clips.jsonl")] == ["b_000000_000010", "d_000000_000010"]


@pytest.mark.parametrize("text", ["", HEADER, "\ufeff" + HEADER + "\n"], ids=["empty", "header", "bom-header"])
def test_an_empty_or_header_only_annotation_file_is_a_usage_error(rq, clip_bank, tmp_path, text):
    raw = kinetics(tmp_path, clip_bank, "bowling,a,0,10,train\n", "")
    (raw / "annotations" / "val.csv").write_text(text, encoding="utf-8")
    result = rq("preprocess", "kinetics", "--raw", raw, "--out", tmp_path / "out", *SMALL)
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        f"error: {raw / 'annotations' / 'val.csv'}: no annotation rows (the file is empty or holds only a header)"]


def test_split_lists_with_conflicts_and_empty_lists(rq, clip_bank, tmp_path):
    raw = lay_out(tmp_path / "raw", clip_bank, {"VideoFlash/1001_DFA_ANG_XX.flv": 0, "VideoFlash/1002_DFA_HAP_XX.flv": 1})
    for name in ("1001_DFA_ANG_XX", "1002_DFA_HAP_XX"):
        (raw / "AudioWAV").mkdir(exist_ok=True)
        (raw / "AudioWAV" / f"{name}.wav").write_bytes(b"")   # never decoded: discovery only
    (tmp_path / "train.txt").write_bytes(codecs.BOM_UTF8 + b"1001_DFA_ANG_XX.flv\n1002_DFA_HAP_XX.flv\n")
    (tmp_path / "test.txt").write_text("1001_DFA_ANG_XX\n")
    found = cremad.discover(raw, RecipeOptions(split_lists=(str(tmp_path / "train.txt"), str(tmp_path / "test.txt"))))
    assert [c.clip_id for c in found.clips] == ["1002_DFA_HAP_XX"]
    assert [(r.source, r.reason) for r in found.rejected] == [
        ("1001_DFA_ANG_XX", f"{tmp_path / 'train.txt'}:1 and {tmp_path / 'test.txt'}:1 disagree (train vs test): left out")]
    (tmp_path / "test.txt").write_text("\n")
    result = rq("preprocess", "cremad", "--raw", raw, "--out", tmp_path / "out", "--split-list", tmp_path / "test.txt")
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"error: --split-list {tmp_path / 'test.txt'}: no clips listed (the file is empty)")
