"""Shards folders made by others (issue 10, points 1, 8, 9): a manifest cannot run a command or read
outside its folder, shards are checked against it as they are read, `rq verify` and `--verify` check
everything up front, a malformed manifest is one line, and warnings do not flood. Real tars and
manifests written here (tests/helpers.py), read by the real loader and CLI."""
import hashlib
import io
import json
import os
import tarfile

import pytest

from helpers import write_shards
from rq.pipeline.console import rate_limited
from rq.train.data import DataConfig, eval_batches, open_source, train_batches

TINY = ("--preset", "tiny", "--epochs", "1", "--workers", "0", "--batch-size", "4", "--device", "cpu")


def cfg(**kw) -> DataConfig:
    return DataConfig(**{"batch_size": 4, "frames": 2, "image_size": 32, "workers": 0, "shuffle_buffer": 4,
                         "pin_memory": False, **kw})


def one_line(result, code: int, *texts: str) -> str:
    """The command failed with exactly one error line (after any progress bar), no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.strip().splitlines() if "shard/s]" not in line]   # the --verify bar
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    line = lines[0]
    for text in texts:
        assert text in line, line
    return line


def edit_manifest(folder, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["pipe:touch MARKER", "/etc/passwd", "../outside.tar", "sub/train-000000.tar"])
def test_shard_names_in_a_manifest_are_plain_file_names(rq, tmp_path, monkeypatch, name):
    """`cd` into a downloaded folder and train on `.`: a `pipe:` name would have run through the shell."""
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [4], "test": [4]}, classes=2, n_frames=2, spec_shape=(257, 20))
    edit_manifest(shards, lambda m: m["splits"]["train"]["shards"][0].update(name=name))
    monkeypatch.chdir(shards)
    one_line(rq("train", "--shards", ".", "--out", tmp_path / "run", *TINY), 2, "manifest.json", repr(name), "refused")
    one_line(rq("verify", "."), 2, repr(name), "refused")
    assert not (shards / "MARKER").exists() and not (tmp_path / "run").exists()


def test_malformed_manifests_are_one_line_usage_errors(rq, tmp_path):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [4]}, classes=2, n_frames=2, spec_shape=(257, 20))
    good = (shards / "manifest.json").read_text()
    cases = [("[1, 2]", "not a JSON object but a JSON list"),
             ("{", "not valid JSON"),
             (json.dumps({**json.loads(good), "splits": None}), "no 'splits' object"),
             (json.dumps({**json.loads(good), "classes": "a,b"}), "'classes' must be a non-empty list"),
             (good.replace('"samples": 4', '"samples": "4"'), "'samples' must be a whole number")]
    for text, reason in cases:
        (shards / "manifest.json").write_text(text)
        one_line(rq("train", "--shards", shards, "--out", tmp_path / "run", *TINY), 2, reason)
        one_line(rq("verify", shards), 2, reason)


def test_shards_are_checked_against_the_manifest_as_they_are_read(tmp_path):
    write_shards(tmp_path, {"train": [8, 6]}, classes=2, n_frames=2, spec_shape=(257, 20))
    # The manifest claims 2 samples where the shard holds 8 (rq 0.1 silently read 2 of them)...
    edit_manifest(tmp_path, lambda m: m["splits"]["train"]["shards"][0].update(samples=2))
    # ...and one byte of a JPEG in the other shard is changed (still a readable tar).
    second = tmp_path / "train-000001.tar"
    data = bytearray(second.read_bytes())
    data[data.index(b"JFIF") + 40] ^= 0xFF
    second.write_bytes(bytes(data))
    batches = eval_batches(open_source(str(tmp_path)), cfg(), split="train")
    assert [k for b in batches for k in b["key"]] == []          # neither shard is used, each named once
    reasons = sorted(s.reason for s in batches.stats.skipped)
    assert reasons == ["ShardMismatch: holds 8 samples, the manifest says 2: shard left out",
                       "ShardMismatch: its sha256 differs from the manifest's (the file was changed or damaged): "
                       "shard left out"]
    assert batches.stats.bad_tars == 2


def test_rq_verify_reports_missing_damaged_changed_and_extra_shards(rq, tmp_path):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [3, 3, 3], "test": [3]}, classes=2, n_frames=2, spec_shape=(257, 20))
    clean = rq("verify", shards)
    assert clean.exit_code == 0 and "every shard matches manifest.json" in clean.stdout, clean.output
    trained = rq("train", "--shards", shards, "--out", tmp_path / "good", *TINY)   # a checkpoint for rq eval
    assert trained.exit_code == 0, trained.stderr
    (shards / "train-000000.tar").unlink()
    damaged = shards / "train-000001.tar"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    changed = shards / "train-000002.tar"
    data = bytearray(changed.read_bytes())
    data[data.index(b"JFIF") + 40] ^= 0xFF
    changed.write_bytes(bytes(data))
    (shards / "stray.tar").write_bytes((shards / "test-000000.tar").read_bytes())
    result = rq("verify", shards)
    assert result.exit_code == 1, result.output
    table = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") == 5}
    assert set(table) == {"train-000000.tar", "train-000001.tar", "train-000002.tar", "stray.tar"}
    assert "missing" in table["train-000000.tar"] and "damaged" in table["train-000001.tar"]
    assert "changed" in table["train-000002.tar"] and "sha256 differs" in table["train-000002.tar"]
    assert "extra" in table["stray.tar"] and "1 shards ok" in result.stdout
    # --verify on train checks everything before the first step: one line naming the first problem
    one_line(rq("train", "--shards", shards, "--out", tmp_path / "run", "--verify", *TINY), 1,
             "3 of 4 shards do not match their manifest", "train-000000.tar: missing", f"rq verify {shards}")
    one_line(rq("eval", "--ckpt", tmp_path / "good" / "best.pt", "--shards", shards, "--workers", "0", "--device",
                "cpu", "--verify"), 1, "3 of 4 shards do not match their manifest", "train-000000.tar: missing")


def tiny_members_tar(path, n: int) -> dict:
    """A tar of `n` one-byte members, each its own (bad) sample: its manifest entry."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i in range(n):
            info = tarfile.TarInfo(f"k{i:06d}.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    data = path.read_bytes()
    return {"name": path.name, "samples": n, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_warnings_are_rate_limited_and_a_reread_bad_sample_counts_once(tmp_path, capsys):
    write_shards(tmp_path, {"train": [5], "test": [2]}, classes=2, n_frames=2, spec_shape=(257, 20))
    entry = tiny_members_tar(tmp_path / "test-000001.tar", 3000)
    edit_manifest(tmp_path, lambda m: m["splits"]["test"]["shards"].append(entry))
    capsys.readouterr()
    batches = eval_batches(open_source(str(tmp_path)), cfg(), split="test")
    assert len([k for b in batches for k in b["key"]]) == 2 and batches.stats.skipped_samples == 3000
    rate_limited.flush()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 6 and lines[-1] == "warning: 2,995 more bad samples not shown (counted per epoch in metrics.jsonl)"

    # One bad sample in a 5-sample shard, 2 batches of 4: the top-up pass reads the shard (and it) again.
    bad = tmp_path / "bad"
    keys = write_shards(bad, {"train": [5]}, classes=2, n_frames=2, spec_shape=(257, 20), bad_jpeg=["x"])["keys"]
    write_shards(bad, {"train": [5]}, classes=2, n_frames=2, spec_shape=(257, 20), bad_jpeg=[keys["train"][1]])
    batches = train_batches(open_source(str(bad)), cfg(), epoch=0, rank=0, world=1, steps=2)
    used = [k for b in batches for k in b["key"]]
    assert len(used) == 8 and keys["train"][1] not in used
    assert batches.stats.skipped_samples == 1
    rate_limited.flush()


def test_a_shard_is_hashed_once_per_run_and_again_when_its_file_changes(tmp_path):
    """The workers report each shard whose sha256 they checked, with its file stamp (size, mtime, inode);
    the next epoch's workers trust that stamp, and a changed file is hashed (and refused) again."""
    write_shards(tmp_path, {"train": [4, 4]}, classes=2, n_frames=2, spec_shape=(257, 20))
    src = open_source(str(tmp_path))
    second = tmp_path / "train-000001.tar"
    first_epoch = train_batches(src, cfg(workers=2), epoch=0, rank=0, world=1, steps=2)
    assert len(list(first_epoch)) == 2 and first_epoch.stats.skipped == []
    stamp = second.stat()
    assert src.verified == {str(p): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino, p.stat().st_dev)
                            for p in (tmp_path / "train-000000.tar", second)}
    # Bytes changed in place with the stamp put back: this run does not hash the shard again.
    data = bytearray(second.read_bytes())
    data[data.index(b"JFIF") + 40] ^= 0xFF
    second.write_bytes(bytes(data))
    os.utime(second, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    trusted = train_batches(src, cfg(workers=2), epoch=1, rank=0, world=1, steps=2)
    assert len(list(trusted)) == 2 and not [s for s in trusted.stats.skipped if s.tar]
    # Any write that moves the mtime (or size, or inode) makes the next read hash it: refused.
    os.utime(second, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))
    rehashed = eval_batches(src, cfg(), split="train")
    assert len([k for b in rehashed for k in b["key"]]) == 4
    assert [s.reason for s in rehashed.stats.skipped] == [
        "ShardMismatch: its sha256 differs from the manifest's (the file was changed or damaged): shard left out"]
