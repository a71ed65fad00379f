"""Frames decoded and cropped on the GPU (`rq train --decode-on gpu`), for when CPU loader workers
cannot keep up with the model.

The workers then only read tars, pick the frames and draw the crop box and flip (the very draws of the
CPU path, rq.train.data.sample.pick_clip); a batch carries the picked JPEGs' bytes. On the device,
`frames_on_device` decodes them with nvJPEG (`torchvision.io.decode_jpeg(device="cuda")`, the optional
extra `rq[gpu]`) and crops, resizes and flips them with plain torch ops (`crop_resize`). Those ops
follow the CPU path (rq.train.data.augment.decode_frame) step by step, including its reduced-size
decoding (emulated by averaging f x f blocks, where libjpeg scales in the DCT), and run on CPU tensors
too: tests/test_gpu_decode.py compares them with the CPU path there."""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rq.train.data.augment import Box, reduction_factor


@dataclass(frozen=True)
class UndecodedFrames:
    """A clip's picked JPEGs with the crop box and flip drawn for each, as a worker hands them on."""
    jpegs: list[bytes]
    boxes: list[Box]
    flips: list[bool]
    size: int      # the crop's side in pixels


def unavailable(device: torch.device) -> str | None:
    """Why the GPU input path cannot run on `device` (one line), or None when it can."""
    if device.type != "cuda":
        return f"--decode-on gpu needs a CUDA device; this run is on {device}"
    try:
        import torchvision.io  # noqa: F401
    except ImportError:
        return "--decode-on gpu needs torchvision (nvJPEG): pip install 'rq[gpu]'"
    return None


def collate(clips: list[UndecodedFrames]) -> dict:
    """The frames part of a batch: every JPEG's bytes back to back (one uint8 tensor, cheap to send
    from a worker), where each starts, and per frame its box and flip."""
    jpegs = [data for clip in clips for data in clip.jpegs]
    offsets = np.cumsum([0] + [len(d) for d in jpegs])
    flat = torch.empty(int(offsets[-1]), dtype=torch.uint8)
    flat.numpy()[:] = np.frombuffer(b"".join(jpegs), np.uint8)
    return {"jpegs": flat, "jpeg_offsets": torch.from_numpy(offsets),
            "boxes": torch.tensor([box for clip in clips for box in clip.boxes], dtype=torch.float64),
            "flips": torch.tensor([flip for clip in clips for flip in clip.flips]),
            "frames_per_clip": len(clips[0].jpegs),
            "image_size": clips[0].size}


def frames_on_device(batch: dict, device: torch.device) -> torch.Tensor:
    """(B, k, 3, S, S) uint8 RGB on `device`, from a batch made by `collate`."""
    from torchvision.io import ImageReadMode, decode_jpeg
    offsets, flat = batch["jpeg_offsets"].tolist(), batch["jpegs"]
    images = decode_jpeg([flat[a:b] for a, b in zip(offsets, offsets[1:])], mode=ImageReadMode.RGB, device=device)
    k, size = batch["frames_per_clip"], batch["image_size"]
    boxes, flips = batch["boxes"].tolist(), batch["flips"].tolist()
    frames = [crop_resize(image, tuple(box), size, flip) for image, box, flip in zip(images, boxes, flips)]
    return torch.stack(frames).view(len(boxes) // k, k, 3, size, size)


def crop_resize(image: torch.Tensor, box: Box, size: int, flip: bool) -> torch.Tensor:
    """A decoded RGB frame (3, H, W) uint8 -> the `box` region resized to (3, size, size), mirrored when
    `flip`: augment.decode_frame's steps on a tensor. Reduced decoding -> average f x f blocks (ceil
    size, as libjpeg); the crop's pixel bounds alike; bilinear (half-pixel centres, cv2's INTER_LINEAR)
    up to a 2x shrink, area averaging (INTER_AREA) beyond."""
    _, full_h, full_w = image.shape
    x = image.unsqueeze(0).float()
    factor = reduction_factor(box, (full_h, full_w), size)
    if factor > 1:
        x = F.avg_pool2d(x, factor, stride=factor, ceil_mode=True)
    h, w = x.shape[-2:]
    top, left = min(round(box[0] * h), h - 1), min(round(box[1] * w), w - 1)
    crop = x[..., top:max(round(box[2] * h), top + 1), left:max(round(box[3] * w), left + 1)]
    if max(crop.shape[-2:]) > 2 * size:
        resized = _area_weights(crop.shape[-2], size, x) @ crop @ _area_weights(crop.shape[-1], size, x).T
    else:
        resized = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
    if flip:
        resized = resized.flip(-1)
    return resized.round_().clamp_(0, 255).to(torch.uint8)[0]


def _area_weights(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of cv2's INTER_AREA shrink along one axis: output pixel i averages input
    [i * n_in / n_out, (i + 1) * n_in / n_out), pixels cut by the edges weighted by the part inside
    (torch's "area" mode rounds those edges to whole pixels instead)."""
    scale = n_in / n_out
    edges = torch.arange(n_out + 1, dtype=torch.float64) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    pixel = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(hi, pixel + 1) - torch.maximum(lo, pixel)).clamp_(min=0)
    return (overlap / scale).to(like.dtype).to(like.device)
