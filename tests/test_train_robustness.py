"""What a user can get wrong around training and evaluation: each is one line (no traceback), and a
test split with nothing readable does not stop training."""
from helpers import write_shards

TINY = ("--preset", "tiny", "--epochs", "1", "--workers", "0", "--batch-size", "4")


def one_line(result, code: int, message: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_training_goes_on_when_no_test_sample_is_readable(rq, tmp_path):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [8], "test": [4]}, classes=2, spec_shape=(257, 20))
    (shards / "test-000000.tar").write_bytes(b"not a tar at all")
    result = rq("train", "--shards", shards, "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "run" / "last.pt").is_file()
    evaluated = rq("eval", "--ckpt", tmp_path / "run" / "last.pt", "--shards", shards, "--workers", "0")
    assert evaluated.exit_code == 1 and "no readable sample in the test split" in evaluated.stderr
    assert "Traceback" not in evaluated.stderr


def test_wrong_checkpoints_and_shards_are_one_line_errors(rq, tmp_path):
    shards, other = tmp_path / "shards", tmp_path / "other"
    write_shards(shards, {"train": [8], "test": [4]}, classes=2, spec_shape=(257, 20))
    write_shards(other, {"train": [8], "test": [4]}, classes=2, spec_shape=(257, 40))
    assert rq("train", "--shards", shards, "--out", tmp_path / "run", *TINY).exit_code == 0
    ckpt = tmp_path / "run" / "last.pt"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 100)
    one_line(rq("eval", "--ckpt", garbage, "--shards", shards), 2, "not a checkpoint of rq train")
    one_line(rq("eval", "--ckpt", ckpt, "--shards", other), 2, "spectrograms are 257x40")
    one_line(rq("train", "--shards", other, "--out", tmp_path / "run", "--resume", *TINY), 2, "spectrograms are 257x40")
    one_line(rq("train", "--shards", tmp_path / "nowhere", *TINY), 2, "no such file or folder")   # a usage error
    resumed = rq("train", "--shards", shards, "--out", tmp_path / "run", "--resume", "--preset", "tiny", "--workers", "1")
    assert resumed.exit_code == 0 and "--workers 1 differs from the run's 0" in resumed.stderr


def test_pipe_urls_train_and_evaluate_with_a_local_manifest(rq, tmp_path):
    """Shards behind a command (as from an object store) plus a local copy of their manifest."""
    shards = tmp_path / "shards"
    write_shards(shards, {"train": [5, 7], "test": [4]}, classes=2, spec_shape=(257, 20))
    urls = f"pipe:cat {shards}/train-{{000000..000001}}.tar::pipe:cat {shards}/test-000000.tar"
    one_line(rq("train", "--shards", urls, "--out", tmp_path / "run", *TINY), 1, "no manifest.json beside")
    result = rq("train", "--shards", urls, "--manifest", shards / "manifest.json", "--out", tmp_path / "run", *TINY)
    assert result.exit_code == 0, result.stderr
    evaluated = rq("eval", "--ckpt", tmp_path / "run" / "last.pt", "--shards", urls,
                   "--manifest", shards / "manifest.json", "--workers", "0")
    assert evaluated.exit_code == 0, evaluated.stderr
    report = (tmp_path / "run" / "eval" / "eval.json").read_text()
    assert '"samples": 4' in report
