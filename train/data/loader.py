"""The streaming input pipeline: WebDataset shards -> batches of uint8 frames, spectrograms and labels.

Each DataLoader worker runs these stages, top to bottom (`_Epoch.__iter__`):
  shard list -> shard order shuffled per (seed, epoch) -> this rank's and worker's span of samples
  -> tar to samples (bad tars skipped and recorded) -> sample shuffle buffer -> decode only the
  picked frames, crop/flip/resize on uint8 (bad samples skipped and recorded) -> batch -> stop.

Training: the epoch is an endless sequence of samples (shard order reshuffled each pass over the
data); rank r, worker w reads its own contiguous span of it, sized so that every rank yields
exactly `steps` batches whatever the shard sizes, and together the spans cover the data before any
sample repeats. Evaluation: every sample exactly once across ranks.
"""
import math
import random
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, count, islice
from typing import NamedTuple

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from rq.pipeline.console import rate_limited
from rq.train.data import gpu_decode
from rq.train.data.augment import MEAN, STD
from rq.train.data.features import collate_features, decode_features, features_to_device
from rq.train.data.gpu_decode import UndecodedFrames
from rq.train.data.sample import decode_clip
from rq.train.data.source import DataError, ShardSource
from rq.train.data.integrity import checked_samples
from rq.train.data.tarstream import TarError



class Skip(NamedTuple):
    """A sample or tar left out: `tar` when the tar itself broke (its remaining samples are lost)."""
    shard: str
    key: str        # the sample, or "" when the error was not inside one
    reason: str     # one line
    tar: bool = False


class Verified(NamedTuple):
    """A shard whose sha256 a worker checked against the manifest, with its file stamp then."""
    shard: str
    stamp: tuple


# rq train says once, at start, when loader processes outnumber the cores; torch would say it again
# at every DataLoader (twice per epoch).
warnings.filterwarnings("ignore", message="This DataLoader will create .* worker processes", category=UserWarning)

# The batch field each modality's input travels in; the model takes its inputs keyed by modality.
INPUT_FIELDS = {"audio": "spec", "visual": "frames"}


def model_inputs(batch: dict) -> dict:
    """A batch's inputs as the model takes them: modality -> tensor (and sequence features' "masks")."""
    if "features" in batch:   # sequence features (CMU-MOSEI): one tensor per modality, and their masks
        return {**batch["features"], "masks": batch["masks"]}
    return {m: batch[f] for m, f in INPUT_FIELDS.items() if f in batch}


def batch_modalities(batch: dict) -> tuple[str, ...]:
    """The modalities a batch holds inputs of."""
    return tuple(batch["features"]) if "features" in batch else tuple(m for m, f in INPUT_FIELDS.items() if f in batch)


def input_of(batch: dict, modality: str) -> torch.Tensor:
    """A modality's input tensor, in a batch of either kind."""
    return batch["features"][modality] if "features" in batch else batch[INPUT_FIELDS[modality]]


def real_values(batch: dict, modality: str) -> torch.Tensor:
    """A modality's input values, padded steps of sequence features left out."""
    x = input_of(batch, modality)
    return x[batch["masks"][modality]] if "features" in batch else x


def with_input(batch: dict, modality: str, x: torch.Tensor) -> dict:
    """The batch with `x` as the modality's input."""
    if "features" in batch:
        return {**batch, "features": {**batch["features"], modality: x}}
    return {**batch, INPUT_FIELDS[modality]: x}


@dataclass(frozen=True)
class DataConfig:
    batch_size: int = 64
    frames: int = 3                   # frames per clip, one from each of this many segments
    image_size: int = 224
    workers: int = 2                  # DataLoader processes; 0 reads in the calling process
    shuffle_buffer: int = 1000        # raw samples each worker holds to shuffle (~0.9 MB each at Kinetics sizes)
    seed: int = 0
    pin_memory: bool = field(default_factory=torch.cuda.is_available)
    crop_scale: tuple[float, float] = (0.08, 1.0)   # RandomResizedCrop area fraction
    frame_crop: str = "clip"          # "clip": one crop + flip for all of a clip's frames; "frame": each its own
    frame_pick: str = "segments"      # which frames: augment.pick_frames's rule
    random_eval_frames: bool = False  # evaluation picks its frames at random too (seeded), as training does
    decode_on: str = "cpu"            # "gpu": workers hand on the picked JPEGs, to_device decodes and crops them


def shard_order(n_shards: int, seed: int, epoch: int, cycle: int = 0) -> list[int]:
    """The shard order of one pass (`cycle`) over the data in `epoch`: reproducible, new every epoch."""
    return np.random.default_rng([seed, epoch, cycle]).permutation(n_shards).tolist()


def train_batches(src: ShardSource, cfg: DataConfig, *, epoch: int, rank: int, world: int, steps: int) -> "Batches":
    """Exactly `steps` training batches on every rank (the trainer derives steps from the manifest:
    n_train // (batch_size * world), at least 1)."""
    if steps < 1:
        raise DataError(f"steps must be >= 1, got {steps}")
    if sum(src.shard_sizes("train")) == 0:
        raise DataError(f"{src.split('train')[0][0]}: the train split has no samples")
    return Batches(_Epoch(src, cfg, "train", epoch, rank, world, steps), cfg, steps)


def eval_batches(src: ShardSource, cfg: DataConfig, *, split: str = "test", rank: int = 0, world: int = 1) -> "Batches":
    """Every sample of `split` exactly once across ranks, in shard order, segment-centre frames and
    a plain resize. Ranks get different counts (gather by `key`); the last batch may be short."""
    src.split(split)
    return Batches(_Epoch(src, cfg, split, 0, rank, world, None), cfg, None)


def to_device(batch: dict, device: torch.device | str, non_blocking: bool = True) -> dict:
    """Move a batch to `device`; frames become float (B,k,3,H,W), scaled and ImageNet-normalised there
    (from the JPEGs, decoded and cropped there, when the batch came from --decode-on gpu)."""
    if "features" in batch:
        return features_to_device(batch, device, non_blocking)
    frames = gpu_decode.frames_on_device(batch, torch.device(device)) if "jpegs" in batch else \
        batch["frames"].to(device, non_blocking=non_blocking)
    mean = torch.tensor(MEAN, device=device).view(1, 1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 1, 3, 1, 1) * 255
    x = torch.empty(frames.shape, dtype=torch.float32, device=device).copy_(frames)
    return {"spec": batch["spec"].to(device, non_blocking=non_blocking).float(),
            "frames": x.sub_(mean).div_(std),
            "label": batch["label"].to(device, non_blocking=non_blocking),
            "key": batch["key"]}


@dataclass
class LoaderStats:
    """What one pass of a `Batches` delivered and skipped (visible to the trainer for its logs)."""
    batches: int = 0
    samples: int = 0
    skipped: list[Skip] = field(default_factory=list)

    @property
    def skipped_samples(self) -> int:
        return sum(1 for s in self.skipped if s.key)

    @property
    def bad_tars(self) -> int:
        return sum(1 for s in self.skipped if s.tar)


class Batches:
    """One epoch (or one evaluation) of batches; a fresh DataLoader each iteration. Batch dict:
    spec float16 (B,1,F,T), frames uint8 (B,k,3,H,W) (a channels-last view), label int64 (B,), key list."""

    def __init__(self, dataset: "_Epoch", cfg: DataConfig, steps: int | None):
        self.dataset, self.cfg, self.steps = dataset, cfg, steps
        self.stats = LoaderStats()

    @property
    def modalities(self) -> tuple[str, ...]:
        """The data's modalities (what metrics name: acc_<m>, share_<m>)."""
        return self.dataset.src.modalities

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("evaluation batches have no fixed length")
        return self.steps

    def __iter__(self) -> Iterator[dict]:
        self.stats = LoaderStats()
        if self.cfg.workers > 0:
            # Before forking: a worker inherits cv2's thread pool in a state it can neither use nor
            # reconfigure (it hangs), and each worker is meant to use one core anyway.
            cv2.setNumThreads(0)
        loader = DataLoader(self.dataset, batch_size=None, num_workers=self.cfg.workers,
                            pin_memory=self.cfg.pin_memory, persistent_workers=False)
        seen = set()
        for item in loader:
            records = item.pop("records")
            # shards whose sha256 a worker checked: the next epoch's workers need not hash them again
            self.dataset.src.verified.update((r.shard, tuple(r.stamp)) for r in records if isinstance(r, Verified))
            for skip in (r for r in records if not isinstance(r, Verified)):
                # The top-up pass and neighbouring workers may meet the same bad sample or tar again.
                if (skip.shard, skip.key, skip.tar) in seen:
                    continue
                seen.add((skip.shard, skip.key, skip.tar))
                self.stats.skipped.append(skip)
                rate_limited.warn("bad shards" if skip.tar else "bad samples",
                                  f"skipped {skip.shard}" + (f" sample {skip.key}" if skip.key else "") + f": {skip.reason}",
                                  hint="counted per epoch in metrics.jsonl")
            if "error" in item:
                raise DataError(item["error"])
            if "key" in item:
                self.stats.batches += 1
                self.stats.samples += len(item["key"])
                yield item


class _Epoch(IterableDataset):
    """The per-worker pipeline; everything it needs travels in its arguments (epoch included)."""

    def __init__(self, src: ShardSource, cfg: DataConfig, split: str, epoch: int, rank: int, world: int,
                 steps: int | None):
        if not 0 <= rank < world:
            raise DataError(f"rank {rank} is not in 0..{world - 1}")
        self.src, self.cfg, self.split, self.epoch = src, cfg, split, epoch
        self.rank, self.world, self.steps = rank, world, steps

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        cfg, urls, log = self.cfg, self.src.split(self.split)[0], []
        expects, verified = self.src.shard_expected(self.split), self.src.verified
        rng = np.random.default_rng([cfg.seed, self.epoch, self.rank, worker, 1])
        if self.steps is not None:
            # Batch i of this rank comes from worker i % workers (the DataLoader's round robin).
            n_batches = len(range(worker, self.steps, workers))
            before = sum(len(range(w, self.steps, workers)) for w in range(worker))
            sizes = self.src.shard_sizes(self.split)
            # Each epoch starts where the last one stopped in the endless stream, so the samples left
            # over by `steps` full batches are not the same ones every epoch (with one shard they were).
            offset = self.epoch * self.steps * self.world * cfg.batch_size % sum(sizes)
            start = offset + (self.rank * self.steps + before) * cfg.batch_size
            stop = start + n_batches * cfg.batch_size
            # Passes 0 and 1 walk the same order, so an epoch starting mid-pass still sees every sample.
            order = lambda cycle: shard_order(len(urls), cfg.seed, self.epoch, max(0, cycle - 1))  # noqa: E731
            shuffle = wds.shuffle(cfg.shuffle_buffer, rng=random.Random(int(rng.integers(2**63))))
            samples = chain(shuffle(_read(urls, expects, verified, _span(sizes, order, start, stop), log)),
                            # Read only when bad samples left the span short; one more pass at most.
                            _read(urls, expects, verified, _span(sizes, order, stop, stop + sum(sizes)), log))
            augment = rng
        else:
            n_batches = None
            # Worker w reads shards w, w+W, ...; of shard k this rank keeps samples j with (k+j) % world == rank.
            samples = _read(urls, expects, verified, ((k, (self.rank - k) % self.world, None, self.world)
                                                      for k in range(worker, len(urls), workers)), log)
            augment = None
        if self.src.features:   # sequence features: no frames, no crops
            decode = partial(decode_features, shapes=self.src.features, n_classes=len(self.src.classes))
        else:
            # Random evaluation frames depend on the worker count, like every random stream here.
            picks = np.random.default_rng([cfg.seed, self.epoch, self.rank, worker, 2]) if cfg.random_eval_frames else None
            decode = partial(decode_clip, frames=cfg.frames, image_size=cfg.image_size, spec_shape=self.src.spec_shape,
                             n_classes=len(self.src.classes), rng=augment, crop_scale=cfg.crop_scale,
                             frame_crop=cfg.frame_crop, frame_pick=cfg.frame_pick, pick_rng=picks,
                             decode=cfg.decode_on == "cpu")
            if not self.src.members.native:   # shards of another tool: members renamed to rq's names first
                decode = partial(_renamed, decode, self.src.members.canonical)
        yield from _batches(_decoded(samples, decode, log), cfg, n_batches, log,
                            collate_features if self.src.features else _collate)


def _span(sizes: Sequence[int], order, start: int, stop: int) -> Iterator[tuple[int, int, int, int]]:
    """Pieces (shard, first, end, step) covering samples [start, stop) of the endless sequence that
    walks the shards in `order(0)`, then `order(1)`, ..."""
    total = sum(sizes)
    first_cycle = start // total
    at = first_cycle * total
    for cycle in count(first_cycle):
        for k in order(cycle):
            lo, hi = max(start, at), min(stop, at + sizes[k])
            if lo < hi:
                yield k, lo - at, hi - at, 1
            at += sizes[k]
            if at >= stop:
                return


def _read(urls: Sequence[str], expects: Sequence[dict | None], verified: dict, pieces, log: list) -> Iterator[dict]:
    """Raw samples (bytes per member) of each piece; a tar that fails, or does not match its manifest
    entry (checked before any of its samples is used), is recorded and left."""
    def record(url: str, stamp: tuple) -> None:
        verified[url] = stamp             # this worker's later pieces of the same shard
        log.append(Verified(url, stamp))  # and, through the trainer, the next epoch's workers

    for k, first, end, step in pieces:
        try:
            yield from islice(checked_samples(urls[k], expects[k], verified, record), first, end, step)
        except (TarError, OSError, ValueError) as exn:  # ValueError: webdataset could not start a pipe:
            log.append(Skip(urls[k], getattr(exn, "key", ""), _one_line(exn), True))


def _decoded(samples, decode, log: list[Skip]) -> Iterator[tuple]:
    """`decode(sample)` of each sample; bad ones recorded and skipped."""
    for sample in samples:
        try:
            yield decode(sample)
        except Exception as exn:  # any undecodable member: record it with shard and key, go on
            log.append(Skip(sample["__url__"], sample["__key__"], _one_line(exn)))


def _renamed(decode, canonical, sample: dict) -> tuple:
    return decode(canonical(sample))


def _batches(clips, cfg: DataConfig, n_batches: int | None, log: list[Skip], collate) -> Iterator[dict]:
    """Batches of `batch_size`; with `n_batches` exactly that many (else an error item), otherwise
    all clips with a short last batch. Skip and Verified records ride on the next item sent to the trainer."""
    made = 0
    while n_batches is None or made < n_batches:
        group = list(islice(clips, cfg.batch_size))
        if len(group) < cfg.batch_size and (n_batches is not None or not group):
            break
        made += 1
        yield collate(group, _empty) | {"records": _drain(log)}
    if n_batches is not None and made < n_batches:
        skipped = sum(isinstance(r, Skip) for r in log)
        yield {"error": f"only {made} of {n_batches} batches could be read: too many bad samples "
                        f"({skipped} skipped)", "records": _drain(log)}
    elif log:
        yield {"records": _drain(log)}


def _collate(group: list[tuple], empty) -> dict:
    spec = empty((len(group), 1, *group[0][1].shape), torch.float16)
    spec_np = spec.numpy()
    for i, clip in enumerate(group):
        spec_np[i, 0] = clip[1]
    batch = {"spec": spec, "label": torch.tensor([g[2] for g in group], dtype=torch.int64),
             "key": [g[3] for g in group]}
    if isinstance(group[0][0], UndecodedFrames):   # --decode-on gpu: to_device decodes them
        return batch | gpu_decode.collate([g[0] for g in group])
    frames = empty((len(group), *group[0][0].shape), torch.uint8)      # (B, k, S, S, 3)
    frames_np = frames.numpy()
    for i, clip in enumerate(group):
        frames_np[i] = clip[0]
    return batch | {"frames": frames.permute(0, 1, 4, 2, 3)}          # (B, k, 3, S, S) view, no copy


def _empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """In a worker, a tensor in shared memory from the start (as torch's default_collate makes), so
    sending the batch to the trainer copies nothing; ~60 MB a batch at the paper's sizes."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


def _drain(log: list[Skip]) -> list[Skip]:
    records = list(log)
    log.clear()
    return records


def _one_line(exn: Exception) -> str:
    text = str(exn)   # not args[0]: for an OSError that is the bare errno
    return " ".join(f"{type(exn).__name__}: {text}".split())

