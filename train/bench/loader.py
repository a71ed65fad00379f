"""`rq bench loader`: samples/s of the streaming shard loader against the reference a user would
otherwise run on the same clips: a folder per clip (1 fps JPEG frames + spectrogram .npy), frames
read with PIL, cropped and normalised to float in the workers (torchvision-style), map-style
torch DataLoader with the same workers, batch size, frame sampling and crops."""
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from rq.pipeline.atomic import write_json
from rq.pipeline.console import fail, progress, summary_table
from rq.train.data.augment import MEAN, STD, pick_frames, random_crop_box
from rq.train.data.loader import DataConfig, train_batches
from rq.train.data.source import FRAME_MEMBER, DataError, ShardSource, open_source
from rq.train.data.tarstream import url_samples


class ClipFolders(Dataset):
    """The reference: `root/<key>/f0000.jpg ...` + `spec.npy`, labels in `root/index.json`."""

    def __init__(self, root: Path, frames: int, image_size: int):
        self.root, self.frames, self.size = root, frames, image_size
        self.clips = json.loads((root / "index.json").read_text())   # [[key, label, n_frames], ...]
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        key, label, n_frames = self.clips[i]
        rng = np.random.default_rng()
        folder = self.root / key
        images = [Image.open(folder / f"f{j:04d}.jpg").convert("RGB") for j in pick_frames(n_frames, self.frames, rng)]
        w, h = images[0].size
        top, left, bottom, right = random_crop_box(h, w, rng)
        flip = bool(rng.integers(2))
        frames = []
        for image in images:
            image = image.resize((self.size, self.size), Image.BILINEAR,
                                 box=(left * w, top * h, right * w, bottom * h))
            if flip:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)   # ToTensor
            frames.append((x - self.mean) / self.std)                                    # Normalize
        spec = torch.from_numpy(np.load(folder / "spec.npy")).float().unsqueeze(0)
        return {"spec": spec, "frames": torch.stack(frames), "label": label, "key": key}


def extract_clip_folders(src: ShardSource, root: Path) -> int:
    """Write the train shards' clips out as the reference's per-clip folders; returns the clip count."""
    index = []
    samples = (sample for url in src.split("train")[0] for sample in url_samples(url))
    for sample in progress(samples, total=src.split("train")[1], desc="clip folders", unit="clip"):
        frames = sorted(name for name in sample if FRAME_MEMBER.fullmatch(name))
        if "spec.npy" not in sample or "cls" not in sample or not frames:
            continue
        folder = root / sample["__key__"]
        folder.mkdir(parents=True)
        for name in frames:
            (folder / name).write_bytes(sample[name])
        (folder / "spec.npy").write_bytes(sample["spec.npy"])
        index.append([sample["__key__"], int(sample["cls"]), len(frames)])
    (root / "index.json").write_text(json.dumps(index))
    return len(index)


def _measure(make: Callable[[int], Iterable[dict]], n: int, desc: str) -> tuple[float, float]:
    """(wall seconds for `n` batches after a first one, CPU seconds of this process and its workers
    for those `n` batches). Start-up is left out of both: the wall clock starts at the first batch;
    the CPU time of a 1-batch run is subtracted from that of the (n + 1)-batch run. CPU time is the
    steadier figure where other jobs share the machine."""
    wall, cpu = _run(make(n + 1), n, desc)
    return wall, cpu - _run(make(1), 0, desc)[1]


def _run(batches: Iterable[dict], n: int, desc: str) -> tuple[float, float]:
    cpu = _cpu_seconds()
    it = iter(batches)
    next(it)
    start = time.perf_counter()
    for _ in progress(range(n), desc=desc, unit="batch"):
        next(it)
    wall = time.perf_counter() - start
    del it  # shuts the workers down and reaps them, so their CPU time is counted below
    return wall, _cpu_seconds() - cpu


def _cpu_seconds() -> float:
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))


def bench_loader(shards: str, *, workers: int = 2, batches: int = 20, batch_size: int = 64, frames: int = 3,
                 image_size: int = 224, rounds: int = 3, json_path: Path | None = None) -> dict:
    """Time both pipelines in one run, print a summary table, optionally write the result as JSON.
    The pipelines take turns for `rounds` rounds; the speed-ups are the median of the rounds' ratios,
    so a burst of load from other jobs on the machine does not land on one pipeline only."""

    try:
        src = open_source(shards)
    except DataError as e:
        fail(str(e))
    cfg = DataConfig(batch_size=batch_size, frames=frames, image_size=image_size, workers=workers)
    root = Path(tempfile.mkdtemp(prefix="rq-clip-folders-"))
    ours, theirs = [], []
    try:
        # Extracting first also brings the shards into the page cache: both pipelines read warm files.
        clips = extract_clip_folders(src, root)
        reference = ClipFolders(root, frames, image_size)

        def reference_batches(k: int) -> DataLoader:
            sampler = RandomSampler(reference, num_samples=k * batch_size)
            return DataLoader(reference, batch_size=batch_size, sampler=sampler, num_workers=workers,
                              pin_memory=cfg.pin_memory)

        for r in range(rounds):
            ours.append(_measure(lambda k: train_batches(src, cfg, epoch=r, rank=0, world=1, steps=k), batches,
                                 f"rq loader {r + 1}/{rounds}"))
            theirs.append(_measure(reference_batches, batches, f"clip folders {r + 1}/{rounds}"))
    except DataError as e:
        fail(str(e))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    samples = batches * batch_size
    (ours_wall, ours_cpu), (theirs_wall, theirs_cpu) = (np.median(runs, axis=0) for runs in (ours, theirs))
    result = {"shards": shards, "clips": clips, "workers": workers, "batches": batches, "batch_size": batch_size,
              "frames": frames, "image_size": image_size, "spec_shape": list(src.spec_shape), "rounds": rounds,
              "rq_samples_per_s": samples / ours_wall, "reference_samples_per_s": samples / theirs_wall,
              "speedup": float(np.median([t[0] / o[0] for o, t in zip(ours, theirs)])),
              "rq_cpu_ms_per_sample": 1e3 * ours_cpu / samples,
              "reference_cpu_ms_per_sample": 1e3 * theirs_cpu / samples,
              "cpu_speedup": float(np.median([t[1] / o[1] for o, t in zip(ours, theirs)])),
              "rq_rounds_wall_cpu": ours, "reference_rounds_wall_cpu": theirs, "cpus": os.cpu_count(),
              "machine": platform.platform(), "processor": platform.processor() or platform.machine()}
    summary_table(f"rq bench loader: training input alone, {clips} clips, {workers} workers, "
                  f"medians of {rounds} rounds of {batches} batches",
                  ["pipeline", "samples/s", "CPU ms/sample"], [
        ("rq shards (WebDataset, cv2, uint8)", result["rq_samples_per_s"], result["rq_cpu_ms_per_sample"]),
        ("reference: clip folders (PIL, float in workers)", result["reference_samples_per_s"],
         result["reference_cpu_ms_per_sample"]),
        ("speed-up", f"{result['speedup']:.2f}x", f"{result['cpu_speedup']:.2f}x"),
    ])
    if json_path is not None:
        write_json(json_path, result, indent=1)
    return result
