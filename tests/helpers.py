"""Tiny shards written exactly in the docs/shards.md layout, with sizes a test can dictate (e.g. 3
train shards of 5, 7 and 11 samples), which `rq preprocess` cannot.

Every frame tells what it is once decoded: green = 16 + 20 * frame index, red rises left to right
(a flip reverses it), blue = 128. Every spectrogram is filled with its sample's ordinal."""
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

GREEN_BASE, GREEN_STEP = 16, 20


def frame_index(rgb: np.ndarray) -> int:
    """The frame index encoded in a decoded RGB frame's green channel."""
    return round((float(rgb[..., 1].mean()) - GREEN_BASE) / GREEN_STEP)


def sample_key(clip_id: str) -> str:
    """The docs/shards.md key: sanitised clip id (<= 80 chars) + first 10 hex of sha1(clip id)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", clip_id)[:80] + "_" + hashlib.sha1(clip_id.encode()).hexdigest()[:10]


def frame_jpeg(index: int, height: int, width: int, texture: bool = False, seed: int = 0) -> bytes:
    """A JPEG whose green level encodes `index`; `texture` adds smooth noise so it costs what a real
    video frame costs to decode (flat colours decode unrealistically fast)."""
    bgr = np.empty((height, width, 3), np.uint8)
    bgr[..., 0] = 128
    bgr[..., 1] = GREEN_BASE + GREEN_STEP * index
    bgr[..., 2] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    if texture:
        noise = np.random.default_rng([seed, index]).normal(0, 40, (height // 4, width // 4, 3))
        bgr = np.clip(bgr + cv2.resize(noise, (width, height)), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def write_shards(out: Path, sizes: Mapping[str, Sequence[int]], *, classes: int = 3, n_frames: int = 10,
                 frame_hw: tuple[int, int] = (48, 64), spec_shape: tuple[int, int] = (257, 12),
                 frames_per_clip: int = 3, bad_jpeg: Sequence[str] = (), nan_spec: Sequence[str] = (),
                 texture: bool = False) -> dict:
    """Write `{split}-{NNNNNN}.tar` shards holding `sizes[split][i]` samples each, plus manifest.json.
    Clip ids are `{split}/clip{ordinal}`; the samples named in `bad_jpeg` (keys) get garbage frames,
    those in `nan_spec` a spectrogram with one NaN.
    Returns the manifest, with an extra "keys" entry: split -> keys in shard order."""
    out.mkdir(parents=True, exist_ok=True)
    names = [f"class {c}" for c in range(classes)]
    manifest = {"format": "rq-shards/1", "recipe": "test", "config": {"seed": 0}, "classes": names,
                "frames_per_clip": frames_per_clip, "splits": {}}
    keys: dict[str, list[str]] = {}
    ordinal = 0
    for split, shard_sizes in sizes.items():
        shards = []
        for index, n in enumerate(shard_sizes):
            path = out / f"{split}-{index:06d}.tar"
            with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
                for _ in range(n):
                    clip_id = f"{split}/clip{ordinal:05d}"
                    key, label = sample_key(clip_id), ordinal % classes
                    meta = {"clip_id": clip_id, "label": label, "label_name": names[label], "split": split,
                            "source": f"{clip_id}.mp4", "duration": float(n_frames), "n_frames": n_frames,
                            "fps": 1.0, "sample_rate": 16000, "audio_seconds": float(n_frames),
                            "stft": {"n_fft": 512, "win_length": 512, "hop_length": 159}}
                    _member(tar, f"{key}.json", json.dumps(meta).encode())
                    _member(tar, f"{key}.cls", str(label).encode())
                    for f in range(n_frames):
                        jpeg = (b"\xff\xd8 not a jpeg" if key in bad_jpeg
                                else frame_jpeg(f, *frame_hw, texture=texture, seed=ordinal))
                        _member(tar, f"{key}.f{f:04d}.jpg", jpeg)
                    spec = io.BytesIO()
                    values = np.full(spec_shape, ordinal, np.float16)
                    if key in nan_spec:
                        values[1, 2] = np.nan
                    np.save(spec, values)
                    _member(tar, f"{key}.spec.npy", spec.getvalue())
                    keys.setdefault(split, []).append(key)
                    ordinal += 1
            data = path.read_bytes()
            shards.append({"name": path.name, "samples": n, "bytes": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()})
        manifest["splits"][split] = {"samples": sum(shard_sizes), "bytes": sum(s["bytes"] for s in shards),
                                     "shards": shards}
    total = sum(sum(s) for s in sizes.values())
    manifest["totals"] = {"clips": total, "samples": total, "skipped": 0,
                          "bytes": sum(s["bytes"] for s in manifest["splits"].values())}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return {**manifest, "keys": keys}


# rq 0.1's names of today's parameters, in rq 0.1's registration order (its optimiser's order).
V01 = (("fusion.cls_token", "fusion_cls"), ("encoders.audio.", "audio."), ("encoders.visual.", "visual."),
       ("fusion.layers.", "fusion."), ("fusion.norm.", "fusion_norm."), ("head.", "head."),
       ("probes.audio.", "audio_probe."), ("probes.visual.", "visual_probe."))


def v01_name(name: str) -> tuple[int, str]:
    for rank, (new, old) in enumerate(V01):
        if name.startswith(new):
            return rank, old + name[len(new):]
    raise AssertionError(f"no rq 0.1 name for {name}")


def write_v01(run: Path, old: Path) -> None:
    """Copy a run folder, rewriting last.pt and config.json in rq 0.1's layout."""
    from rq.train.trainer.checkpoint import load_checkpoint, save_checkpoint
    shutil.copytree(run, old)
    state = load_checkpoint(run / "last.pt")
    model = sorted(state["model"].items(), key=lambda kv: v01_name(kv[0])[0])       # stable: keeps order within
    order = [n for n, _ in sorted(enumerate(state["param_names"]), key=lambda p: v01_name(p[1])[0])]
    opt = state["optimizer"]
    state["optimizer"] = {"state": {i: opt["state"][o] for i, o in enumerate(order) if o in opt["state"]},
                          "param_groups": [{**g, "params": list(range(len(order)))} for g in opt["param_groups"]]}
    state["model"] = {v01_name(k)[1]: v for k, v in model}
    config = state["config"]
    flat = {k: v for k, v in config.items() if k != "rollingq"} | {f"rq_{k}": v for k, v in config["rollingq"].items()}
    state["config"] = flat | {"fusion_layers": 0, "out": str(old)}
    del state["param_names"]
    save_checkpoint(state, old / "last.pt")
    (old / "config.json").write_text(json.dumps(state["config"], indent=2) + "\n")


def without_permission_override() -> None:
    """A subprocess `preexec_fn`: the new program cannot read or write files its permission bits
    forbid, even as root (the capabilities that let root ignore them are dropped from the bounding
    and inheritable sets, so neither the program nor what it starts gets them back). Without those
    capabilities (not root) there is nothing to drop."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, pr_cap_ambient, ambient_clear_all = 24, 47, 4
    override = (1, 2)   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    libc.prctl(pr_cap_ambient, ambient_clear_all, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)        # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()                       # {effective, permitted, inheritable} x 2 words
    if libc.capget(header, data) == 0:
        for cap in override:
            libc.prctl(pr_capbset_drop, cap, 0, 0, 0)
            data[2] &= ~(1 << cap)                       # inheritable: not passed to what this runs
            data[0] &= ~(1 << cap)                       # effective: not used here either
        libc.capset(header, data)


def rq_script() -> str:
    """The `rq` entry point of the Python running the tests (a PATH lookup could find another
    environment's, or a pyenv shim, which is a shell script torchrun cannot run)."""
    return shutil.which("rq", path=str(Path(sys.executable).parent)) or shutil.which("rq")


def python_env() -> dict:
    """The parent's Python environment (venv, PYTHONPATH), minus anything that names a rank: for
    training processes a test launches."""
    keep = ("PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "RQ_FFMPEG")
    return {k: v for k, v in os.environ.items() if k in keep}


def kill_mid_epoch(proc, last: Path, epoch: int, timeout: float = 240.0) -> dict:
    """SIGKILL the process group of `proc` (started with start_new_session=True) once `last` (its
    last.pt) is a mid-epoch checkpoint of `epoch`; returns that checkpoint. The group is paused
    (SIGSTOP) while the file is read, so the moment cannot slip by: a tiny epoch's tail is a few ms."""
    from rq.train.trainer.checkpoint import load_checkpoint   # torch: only for the tests that use it
    deadline, seen = time.monotonic() + timeout, None
    while proc.poll() is None and time.monotonic() < deadline:
        stamp = last.stat().st_mtime_ns if last.exists() else None
        if stamp is not None and stamp != seen:
            os.killpg(proc.pid, signal.SIGSTOP)
            try:
                state, seen = load_checkpoint(last), stamp
                if (state.get("mid_epoch") or {}).get("epoch") == epoch:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return state
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError(f"{last}: no mid-epoch checkpoint of epoch {epoch} before the run "
                         f"{'ended' if proc.poll() is not None else 'timed out'}")
