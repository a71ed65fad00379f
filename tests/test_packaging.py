"""What `pip install` puts on the import path: only `rq` and `rollingq`, never top-level `train`,
`pipeline`, `cli` or `manifests` (names other projects use), and both work from a folder that holds
modules of those names. A real wheel is built from this checkout and installed into a fresh venv."""
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INTENDED = {"rq", "rollingq"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built from a copy (a build leaves build/ and *.egg-info behind)."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "runs",
                                                                 "demo", ".venv", ".whl", ".gl"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=300)
    [built] = out.glob("rq-*.whl")
    return built


def test_the_distribution_installs_exactly_rq_and_rollingq(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top_level = z.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode().split()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == INTENDED and set(top_level) == INTENDED
    # the data files travel with their package, and the sub-packages are all there
    assert "rq/manifests/kinetics_sounds_31.txt" in names
    for sub in ("rq/cli.py", "rq/pipeline/stages/__init__.py", "rq/pipeline/recipes/layout.py",
                "rq/train/trainer/fit.py", "rq/train/data/loader.py", "rollingq/factory.py"):
        assert sub in names, sub
    assert not any(n.startswith(("rq/tests/", "rq/benchmarks/")) for n in names)


def test_installed_rq_works_from_a_folder_of_same_named_modules(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)   # deps from this interpreter
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    hostile = tmp_path / "project"
    hostile.mkdir()
    for name in ("train", "pipeline", "cli", "manifests"):
        (hostile / f"{name}.py").write_text("raise ImportError('the wrong module was imported')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import rollingq, rq.cli; from rollingq import create_model; "
            "print(rollingq.__file__); print(rq.cli.__file__)")
    run = subprocess.run([str(python), "-c", code], cwd=hostile, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    site = str(env_dir)
    assert all(line.startswith(site) for line in run.stdout.split()), run.stdout   # the wheel's copy, not a checkout
    command = subprocess.run([str(env_dir / "bin" / "rq"), "train", "--help"], cwd=hostile, env=env,
                             capture_output=True, text=True, timeout=120)
    assert command.returncode == 0 and "--shards" in command.stdout, command.stderr
