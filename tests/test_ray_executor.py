"""`rq preprocess --executor ray` on a real Ray cluster started here: one head node of 2 CPUs for the
module (`ray start --head --block` on 127.0.0.1, its own process group, stopped at the end), joined
with --ray-address; one test lets rq start its own local instance instead. Outputs are compared byte
for byte with the process pool's on the same clips. Ray tasks and the node belong to this test: the
processes killed here are found by their ancestry (descendants of what this module started)."""
import ctypes
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import contents, lay_out, snapshot

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                 reason="the ray extra is not installed (pip install 'rq[ray]')")]
TASK_TITLE = "ray::run_item"   # a Ray worker's process title while it runs rq's task


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(stat.parent.name))
    return tree


def _task_workers(root: int) -> list[int]:
    """Descendants of `root` that are Ray workers running rq's task right now."""
    tree, found, todo = _children(), [], [root]
    while todo:
        for pid in tree.get(todo.pop(), []):
            todo.append(pid)
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() == TASK_TITLE:
                    found.append(pid)
            except OSError:
                pass
    return found


@pytest.fixture(scope="module")
def head():
    """A one-node cluster of 2 CPUs; yields (address, pid of the `ray start` process). Authentication is
    Ray's default for `ray start` (a token when ~/.ray/auth_token exists), which rq's driver follows."""
    port = _free_port()
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--num-cpus", "2",
           "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
           "--dashboard-agent-listen-port", str(_free_port()), "--ray-client-server-port", str(_free_port()),
           "--object-store-memory", str(100 * 2**20), "--disable-usage-stats"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_die_with_parent)
    address = f"127.0.0.1:{port}"
    try:
        _wait_until_joinable(address, proc)
        yield address, proc.pid
    finally:
        _stop(proc)


def _die_with_parent() -> None:
    """In the `ray start` child: SIGTERM when pytest dies without its teardown (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _wait_until_joinable(address: str, proc: subprocess.Popen) -> None:
    from rq.pipeline.errors import ExecutorError
    from rq.pipeline.executors.ray import cluster_nodes, connect, disconnect
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"ray start failed: {proc.stderr.read().decode()[-2000:]}"
        try:
            connected = connect(address)
        except ExecutorError as e:   # its GCS is not listening yet
            assert time.monotonic() < deadline, f"the Ray head did not come up: {e}"
            time.sleep(0.5)
            continue
        try:
            if cluster_nodes():   # its raylet has registered: tasks can run
                return
        finally:
            disconnect(connected)
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """The node's whole process group (its own session): SIGTERM, then SIGKILL for what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass
    proc.wait()


@pytest.fixture(scope="module")
def raw(tmp_path_factory, clip_bank) -> Path:
    files = {f"train/{c}/{c}{i}.mp4": j for j, (c, i) in enumerate((c, i) for c in "ab" for i in range(3))}
    files |= {"test/a/a9.mp4": 6, "test/b/b9.mp4": 7}
    return lay_out(tmp_path_factory.mktemp("ray") / "raw", clip_bank, files)


@pytest.fixture(scope="module")
def pool_output(raw, tmp_path_factory) -> tuple[Path, str]:
    """The process pool's output on these clips, and its stdout."""
    from typer.testing import CliRunner
    from rq import cli
    out = tmp_path_factory.mktemp("pool") / "out"
    result = CliRunner().invoke(cli.app, ["preprocess", "folder", "--raw", str(raw), "--out", str(out), "--workers",
                                          "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out, result.stdout


def _tables(stdout: str) -> str:
    """The summary tables without what differs from run to run (seconds, the output folder)."""
    kept = "\n".join(line for line in stdout.splitlines() if " in " not in line)
    return re.sub(r" +", " ", re.sub(r"\d+\.\d+", "N", kept))


def test_same_bytes_as_the_pool_and_timeouts_are_transient(rq, head, raw, pool_output, tmp_path):
    address, _ = head
    pool_out, pool_stdout = pool_output
    out = tmp_path / "out"
    # Every ffmpeg call runs past a 1 ms --timeout: each clip fails, transiently (not cached), as locally.
    timed_out = rq("preprocess", "folder", "--raw", raw, "--out", out, "--executor", "ray", "--ray-address", address,
                   "--timeout", "0.001")
    assert timed_out.exit_code == 1
    reasons = [json.loads(line)["reason"] for line in (out / "failures.jsonl").read_text().splitlines()]
    assert len(reasons) == 8 and all("timed out" in r for r in reasons)

    done = rq("preprocess", "folder", "--raw", raw, "--out", out, "--executor", "ray", "--ray-address", address)
    assert done.exit_code == 0, done.stderr
    assert f"ray: joined {address}, 1 node(s), 2 CPUs" in done.stderr
    assert contents(out) == contents(pool_out)   # shards, manifest, indexes, audit files: byte for byte
    assert _tables(done.stdout) == _tables(pool_stdout)   # every clip computed again: none was cached as failed

    before = snapshot(out)
    rerun = rq("preprocess", "folder", "--raw", raw, "--out", out, "--executor", "ray", "--ray-address", address)
    assert rerun.exit_code == 0 and "ray:" not in rerun.stderr   # nothing to compute: Ray is not even joined
    assert snapshot(out) == before                               # no file rewritten
    assert re.search(r"probe\s+│\s+0 │\s+8 │", rerun.stdout)

    dry = [rq("preprocess", "folder", "--raw", raw, "--out", tmp_path / "dry", "--executor", executor, "--dry-run")
           for executor in ("ray", "process")]
    assert dry[0].stdout == dry[1].stdout and "ray:" not in dry[0].stderr


def test_a_killed_worker_is_retried_on_a_local_instance(rq, raw, pool_output, tmp_path):
    """No address: rq starts (and stops) its own 2-CPU instance. One worker process is SIGKILLed while it
    runs a clip; Ray runs that clip again and the output is the pool's."""
    killed: list[int] = []
    stop = threading.Event()

    def kill_one() -> None:
        while not stop.is_set() and not killed:
            for pid in _task_workers(os.getpid())[:1]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    try:
        result = rq("preprocess", "folder", "--raw", raw, "--out", tmp_path / "out", "--executor", "ray",
                    "--workers", "2")
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen running a clip"
    assert result.exit_code == 0, result.stderr
    assert "ray: a local instance, 1 node(s), 2 CPUs" in result.stderr
    assert contents(tmp_path / "out") == contents(pool_output[0])
    import ray
    assert not ray.is_initialized()   # the local instance went with the run


def test_ctrl_c_stops_the_tasks_and_a_rerun_finishes(rq, head, raw, pool_output, tmp_path):
    address, head_pid = head
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "rq.cli", "preprocess", "folder", "--raw", str(raw), "--out", str(out),
           "--executor", "ray", "--ray-address", address]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _task_workers(head_pid):
        assert proc.poll() is None and time.monotonic() < deadline, "no clip started on the cluster"
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    # as with the process pool: typer's 130, or rq's one line "aborted" (1) when click sees it first
    assert proc.returncode in (1, 130) and "Traceback" not in stderr, stderr[-3000:]
    assert not (out / "manifest.json").exists()   # the shards and manifest are written after the last clip
    deadline = time.monotonic() + 30
    while _task_workers(head_pid):   # the driver is gone, so are its tasks
        assert time.monotonic() < deadline, "Ray tasks kept running after Ctrl-C"
        time.sleep(0.2)

    rerun = rq("preprocess", "folder", "--raw", raw, "--out", out, "--executor", "ray", "--ray-address", address)
    assert rerun.exit_code == 0, rerun.stderr
    assert contents(out) == contents(pool_output[0])


def test_doctor_lists_the_cluster(rq, head):
    import ray
    address, _ = head
    result = rq("doctor", "--ray-address", address)
    assert result.exit_code == 0, result.stderr
    assert f"ray:            {ray.__version__}" in result.stdout
    assert f"ray cluster:    {address}: 1 node(s), 2 CPUs" in result.stdout
    assert re.search(r"ray node:\s+\S+ \([0-9a-f]{8}\): 2 CPUs", result.stdout)


def test_usage_and_unreachable_cluster_are_one_line(rq, raw, tmp_path):
    closed = _free_port()   # nothing listens there
    for args, line in ((["--ray-address", "auto"], "error: --ray-address needs --executor ray"),
                       (["--executor", "spark"], "error: --executor must be process or ray, got 'spark'"),
                       (["--executor", "ray", "--ray-address", f"127.0.0.1:{closed}"],
                        f"error: cannot reach the Ray cluster at 127.0.0.1:{closed}: Connection refused")):
        result = rq("preprocess", "folder", "--raw", raw, "--out", tmp_path / "out", *args)
        assert result.exit_code == 2 and result.stderr.strip().splitlines()[-1] == line, result.stderr


def _mount_namespaces() -> bool:
    try:
        return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _mount_namespaces(), reason="needs `unshare --mount` (root) to give rq another view of "
                    "the filesystem than the Ray node's")
def test_a_node_that_cannot_see_the_raw_files_stops_the_run(head, raw, tmp_path):
    """The driver runs in its own mount namespace, with the raw clips on a tmpfs only it mounts: the Ray
    node (outside) cannot read the first clip, and the run stops at start with one line naming both."""
    address, _ = head
    private = tmp_path / "private"
    private.mkdir()
    rq = f"{sys.executable} -m rq.cli preprocess folder --raw {private}/raw --out {tmp_path}/out --executor ray " \
         f"--ray-address {address}"
    script = f"mount -t tmpfs tmpfs {private} && cp -r {raw} {private}/raw && exec {rq}"
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: Ray node \S+ \([0-9a-f]{{8}}\) cannot read {private}/raw/\S+\.mp4: No such file "
                        r"or directory; --raw and the cache must be one filesystem that every node mounts at the "
                        r"same path", line), line
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_the_benchmark_runs_on_two_clips(tmp_path):
    """benchmarks/ray_executor.py end to end on 2 tiny clips (no speed assertion: the figures are in
    benchmarks/README.md)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ray_executor.py"
    done = subprocess.run([sys.executable, str(script), "--clips", "2", "--seconds", "2", "--size", "128x72",
                           "--noop", "20", "--json", str(tmp_path / "r.json")], capture_output=True, text=True,
                          timeout=200, start_new_session=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    pool, ray_run = result["phases"]
    assert pool["clips"] == ray_run["clips"] == 2 and result["same_bytes"]
    assert abs(result["ray_over_pool_clips_per_s"] - pool["seconds"] / ray_run["seconds"]) < 1e-9
    assert result["ray_start_stop_s"] > 0 and set(result["noop_ms_per_item"]) == {"pool", "ray"}
