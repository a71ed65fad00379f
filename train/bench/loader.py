"""`rq bench loader`: samples/s of the streaming shard loader against what a user would otherwise run
on the same clips, with the same workers, batch size, frame sampling and crop boxes:
- the pipeline a WebDataset user writes by hand on the same shards: `wds.WebDataset(urls,
  resampled=True)` (shards shuffled by drawing them), `.shuffle(1000)`, `.decode("pil")`, PIL crops
  normalised to float in the workers, `.batched()`;
- a folder per clip (1 fps JPEG frames + spectrogram .npy), frames read with PIL, cropped and
  normalised to float in the workers (torchvision-style), map-style torch DataLoader.
And the tar readers alone, in this process: rq's (train/data/tarstream.py) against webdataset's."""
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
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler

from rq.pipeline.atomic import write_json
from rq.pipeline.console import fail, progress, summary_table
from rq.train.data.augment import MEAN, STD, pick_frames, random_crop_box
from rq.train.data.loader import DataConfig, train_batches
from rq.train.data.sample import real_frames
from rq.train.data.members import FRAME_MEMBER
from rq.train.data.source import DataError, ShardSource, open_source
from rq.train.data.tarstream import url_samples


class ClipFolders(Dataset):
    """The reference: `root/<key>/f0000.jpg ...` + `spec.npy`, labels in `root/index.json`."""

    def __init__(self, root: Path, frames: int, image_size: int):
        self.root, self.frames, self.size = root, frames, image_size
        self.clips = json.loads((root / "index.json").read_text())   # [[key, label, n_frames], ...]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict:
        key, label, n_frames = self.clips[i]
        rng = np.random.default_rng()
        folder = self.root / key
        images = [Image.open(folder / f"f{j:04d}.jpg").convert("RGB") for j in pick_frames(n_frames, self.frames, rng)]
        spec = torch.from_numpy(np.load(folder / "spec.npy")).float().unsqueeze(0)
        return {"spec": spec, "frames": pil_crops(images, self.size, rng), "label": label, "key": key}


_MEAN, _STD = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)


def pil_crops(images: list, size: int, rng: np.random.Generator) -> torch.Tensor:
    """One RandomResizedCrop box and flip for all of a clip's frames, PIL resize, ToTensor + Normalize:
    (k, 3, size, size) float, as torchvision's transforms give."""
    w, h = images[0].size
    top, left, bottom, right = random_crop_box(h, w, rng)
    flip = bool(rng.integers(2))
    frames = []
    for image in images:
        image = image.resize((size, size), Image.BILINEAR, box=(left * w, top * h, right * w, bottom * h))
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255)   # ToTensor
        frames.append((x - _MEAN) / _STD)                                            # Normalize
    return torch.stack(frames)


def plain_webdataset(urls: list[str], frames: int, image_size: int, batch_size: int, workers: int,
                     pin_memory: bool) -> DataLoader:
    """The pipeline a WebDataset user writes by hand: shards shuffled, samples shuffled in a buffer,
    every member decoded by webdataset's decoders (`.decode("pil")`: JPEGs to PIL images, .npy to arrays),
    then the picked frames cropped like the others, batched in the workers."""
    def to_tensors(sample: dict) -> tuple:
        names = sorted(name for name in sample if FRAME_MEMBER.fullmatch(name))
        names = names[:len(names) - sample.get("json", {}).get("frames_padded", 0)]   # rq's padding: not picked
        rng = np.random.default_rng()
        images = [sample[names[j]] for j in pick_frames(len(names), frames, rng)]
        return (torch.from_numpy(sample["spec.npy"]).float().unsqueeze(0), pil_crops(images, image_size, rng),
                int(sample["cls"]))
    # resampled=True: shards drawn at random without end, webdataset's own recipe for training (it
    # ignores shardshuffle then; False only silences its warning). `shardshuffle=N` alone ends after
    # one pass, `.repeat()` restarts the whole pipeline each pass (a partial batch and an empty shuffle
    # buffer every few shards), and the constructor's repeat=True does nothing in webdataset 1.0.
    dataset = (wds.WebDataset(urls, resampled=True, shardshuffle=False).shuffle(1000).decode("pil")
               .map(to_tensors).batched(batch_size, partial=False))
    return DataLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory)


def reader_rates(urls: list[str]) -> tuple[float, float]:
    """Samples/s of reading every sample's members as bytes: rq's tar reader, webdataset's (the
    `wds.WebDataset(urls)` stages before decoding), in this process."""
    rates = []
    for read in (lambda: (s for url in urls for s in url_samples(url)),
                 lambda: iter(wds.WebDataset(urls, shardshuffle=False, empty_check=False))):
        start, n = time.perf_counter(), sum(1 for _ in read())
        rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


def extract_clip_folders(src: ShardSource, root: Path) -> int:
    """Write the train shards' clips out as the reference's per-clip folders; returns the clip count."""
    index = []
    samples = (sample for url in src.split("train")[0] for sample in url_samples(url))
    for sample in progress(samples, total=src.split("train")[1], desc="clip folders", unit="clip"):
        frames = real_frames(sample)
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
    """Time the pipelines in one run, print a summary table, optionally write the result as JSON.
    The pipelines take turns for `rounds` rounds; the speed-ups are the median of the rounds' ratios,
    so a burst of load from other jobs on the machine does not land on one pipeline only."""

    try:
        src = open_source(shards)
    except DataError as e:
        fail(str(e))
    cfg = DataConfig(batch_size=batch_size, frames=frames, image_size=image_size, workers=workers)
    urls = src.split("train")[0]
    root = Path(tempfile.mkdtemp(prefix="rq-clip-folders-"))
    runs: dict[str, list] = {"rq": [], "wds": [], "folders": [], "readers": []}
    try:
        # Extracting first also brings the shards into the page cache: all pipelines read warm files.
        clips = extract_clip_folders(src, root)
        reference = ClipFolders(root, frames, image_size)

        def reference_batches(k: int) -> DataLoader:
            sampler = RandomSampler(reference, num_samples=k * batch_size)
            return DataLoader(reference, batch_size=batch_size, sampler=sampler, num_workers=workers,
                              pin_memory=cfg.pin_memory)

        def wds_batches(k: int) -> DataLoader:   # endless (resampled): _run takes what it times
            return plain_webdataset(urls, frames, image_size, batch_size, workers, cfg.pin_memory)

        for r in range(rounds):
            runs["rq"].append(_measure(lambda k: train_batches(src, cfg, epoch=r, rank=0, world=1, steps=k), batches,
                                       f"rq loader {r + 1}/{rounds}"))
            runs["wds"].append(_measure(wds_batches, batches, f"plain webdataset {r + 1}/{rounds}"))
            runs["folders"].append(_measure(reference_batches, batches, f"clip folders {r + 1}/{rounds}"))
            runs["readers"].append(reader_rates(urls))
    except DataError as e:
        fail(str(e))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    samples = batches * batch_size
    wall = {name: float(np.median([w for w, _ in runs[name]])) for name in ("rq", "wds", "folders")}
    cpu = {name: float(np.median([c for _, c in runs[name]])) for name in ("rq", "wds", "folders")}

    def speedup(other: str, i: int) -> float:   # the median of the rounds' ratios (time other / time rq)
        return float(np.median([t[i] / o[i] for o, t in zip(runs["rq"], runs[other])]))
    ours_read, wds_read = (float(np.median([r[i] for r in runs["readers"]])) for i in (0, 1))
    result = {"shards": shards, "shard_files": len(urls), "clips": clips, "workers": workers, "batches": batches,
              "batch_size": batch_size, "frames": frames, "image_size": image_size,
              "spec_shape": list(src.spec_shape), "rounds": rounds,
              "rq_samples_per_s": samples / wall["rq"], "wds_samples_per_s": samples / wall["wds"],
              "reference_samples_per_s": samples / wall["folders"],
              "speedup_vs_wds": speedup("wds", 0), "cpu_speedup_vs_wds": speedup("wds", 1),
              "speedup": speedup("folders", 0), "cpu_speedup": speedup("folders", 1),
              "rq_cpu_ms_per_sample": 1e3 * cpu["rq"] / samples, "wds_cpu_ms_per_sample": 1e3 * cpu["wds"] / samples,
              "reference_cpu_ms_per_sample": 1e3 * cpu["folders"] / samples,
              "tar_reader_samples_per_s": {"rq": ours_read, "webdataset": wds_read}, "tar_reader_speedup": ours_read / wds_read,
              "rounds_wall_cpu": {name: runs[name] for name in ("rq", "wds", "folders")}, "cpus": os.cpu_count(),
              "load_average": [round(x, 2) for x in os.getloadavg()],
              "machine": platform.platform(), "processor": platform.processor() or platform.machine()}
    summary_table(f"rq bench loader: training input alone, {clips} clips in {len(urls)} train shards, {workers} "
                  f"workers, medians of {rounds} rounds of {batches} batches",
                  ["pipeline", "samples/s", "CPU ms/sample", "rq speed-up (wall / CPU)"], [
        ("rq shards (rq's tar reader, cv2, uint8)", result["rq_samples_per_s"], result["rq_cpu_ms_per_sample"], ""),
        ("plain WebDataset (.shuffle, .decode('pil'), PIL, float)", result["wds_samples_per_s"],
         result["wds_cpu_ms_per_sample"], f"{result['speedup_vs_wds']:.2f}x / {result['cpu_speedup_vs_wds']:.2f}x"),
        ("clip folders (PIL, float in workers)", result["reference_samples_per_s"],
         result["reference_cpu_ms_per_sample"], f"{result['speedup']:.2f}x / {result['cpu_speedup']:.2f}x"),
        ("tar reading alone, samples/s: rq's / webdataset's", f"{ours_read:.0f} / {wds_read:.0f}", "",
         f"{result['tar_reader_speedup']:.2f}x"),
    ])
    if json_path is not None:
        write_json(json_path, result, indent=1)
    return result
