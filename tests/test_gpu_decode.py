"""The GPU input path (`--decode-on gpu`) without a GPU: its crop/resize code on CPU tensors against
the CPU path (cv2), the loader's undecoded batches, and the one-line refusal where there is no CUDA.
(nvJPEG itself needs CUDA and torchvision, which no CPU build of torch 2.13 has; not run here.)"""
import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helpers import frame_jpeg, write_shards
from rq.cli import app
from rq.train.data import DataConfig, open_source, train_batches
from rq.train.data.augment import FULL, decode_frame, jpeg_size, random_crop_box, reduction_factor
from rq.train.data.gpu_decode import crop_resize, unavailable


def rgb_tensor(jpeg: bytes) -> torch.Tensor:
    """A JPEG decoded in full (as nvJPEG does), (3, H, W) uint8 RGB."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).contiguous()


def cpu_path(jpeg: bytes, box, size: int, flip: bool) -> np.ndarray:
    out = np.empty((size, size, 3), np.uint8)
    decode_frame(jpeg, box, size, flip, out)
    return out


@pytest.mark.parametrize("hw", [(256, 455), (360, 640)])
def test_crop_resize_matches_the_cpu_path(hw):
    """Frames the CPU path decodes at full size: within 1 grey level everywhere (bilinear and area).
    Frames it decodes at 1/2..1/8 size (libjpeg scales in the DCT; a block average stands in for that
    here): mean difference under 3 levels."""
    jpeg = frame_jpeg(3, *hw, texture=True, seed=1)
    image, rng = rgb_tensor(jpeg), np.random.default_rng(0)
    seen = set()
    for size in (224, 112, 32):
        for trial in range(6):
            box, flip = (FULL, False) if trial == 0 else (random_crop_box(*hw, rng), bool(trial % 2))
            ours = crop_resize(image, box, size, flip).permute(1, 2, 0).numpy().astype(int)
            diff = np.abs(ours - cpu_path(jpeg, box, size, flip))
            factor = reduction_factor(box, jpeg_size(jpeg), size)
            seen.add((factor, max((box[2] - box[0]) * hw[0], (box[3] - box[1]) * hw[1]) / factor > 2 * size))
            if factor == 1:
                assert diff.max() <= 1, (size, box)
            else:
                assert diff.mean() < 3, (size, box, factor)
    assert {(1, False), (1, True)} <= seen and any(f > 1 for f, _ in seen)   # bilinear, area and reduced all met


@pytest.mark.parametrize("frame_crop", ["clip", "frame"])
def test_loader_hands_on_the_picked_jpegs_with_the_same_crops(tmp_path, frame_crop):
    """Same seed, same epoch: the GPU path's batch (JPEG bytes, boxes, flips), decoded and cropped by
    crop_resize, is the CPU path's batch (1 grey level: these frames are decoded at full size), with one
    crop per clip or one per frame."""
    write_shards(tmp_path, {"train": [6, 6]}, frame_hw=(48, 64), texture=True)
    src = open_source(str(tmp_path))
    common = dict(batch_size=4, frames=3, image_size=32, workers=0, shuffle_buffer=4, pin_memory=False,
                  frame_crop=frame_crop)
    cpu = list(train_batches(src, DataConfig(**common), epoch=1, rank=0, world=1, steps=2))
    gpu = list(train_batches(src, DataConfig(**common, decode_on="gpu"), epoch=1, rank=0, world=1, steps=2))
    for ours, theirs in zip(gpu, cpu):
        assert ours["key"] == theirs["key"] and "frames" not in ours
        offsets = ours["jpeg_offsets"].tolist()
        jpegs = [ours["jpegs"][a:b].numpy().tobytes() for a, b in zip(offsets, offsets[1:])]
        assert len(jpegs) == 4 * 3 and all(j[:2] == b"\xff\xd8" for j in jpegs)
        frames = torch.stack([crop_resize(rgb_tensor(j), tuple(ours["boxes"][i].tolist()), 32, bool(ours["flips"][i]))
                              for i, j in enumerate(jpegs)]).view(4, 3, 3, 32, 32)
        assert (frames.int() - theirs["frames"].int()).abs().max() <= 1
        assert torch.equal(ours["spec"], theirs["spec"]) and torch.equal(ours["label"], theirs["label"])


def test_without_cuda_decode_on_gpu_is_one_line(tmp_path):
    assert "CUDA" in unavailable(torch.device("cpu"))
    write_shards(tmp_path, {"train": [4], "test": [2]})
    result = CliRunner().invoke(app, ["train", "--shards", str(tmp_path), "--preset", "tiny", "--decode-on", "gpu",
                                      "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 2 and not (tmp_path / "run").exists()
    assert result.output.strip().splitlines()[-1] == "error: --decode-on gpu needs a CUDA device; this run is on cpu"
