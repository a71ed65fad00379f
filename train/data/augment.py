"""What happens to one clip's frames on the way into a batch: which frames are picked, where they
are cropped, and the uint8 decode + crop + resize + flip itself (cv2; normalisation is left to the
device, see `train.data.to_device`)."""
import math

import cv2
import numpy as np

# ImageNet statistics of the 0..1 RGB image, applied on the device.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

Box = tuple[float, float, float, float]  # (top, left, bottom, right) as fractions of the frame
FULL: Box = (0.0, 0.0, 1.0, 1.0)


def pick_frames(n_frames: int, k: int, rng: np.random.Generator | None, rule: str = "segments") -> list[int]:
    """Which k of a clip's `n_frames` frames (indices in time order) a sample uses; random when `rng`
    is given (training), fixed otherwise (evaluation). Fewer frames than needed repeats frames rather
    than failing, so a short clip still yields `k`.

    segments: one frame in each of k equal segments, a random one or the segment centre.
    released-ks: the released Kinetics-Sounds loader's rule, on its frame files numbered from 1 (ffmpeg's
      default; file t is our index t - 1): with more than 6 frames, seg = n // k, training draws file
      t in [i·seg + 1, i·seg + seg] (at most 9: it cannot name a file 10), evaluation takes
      i·seg + max(seg // 2, 1); with 6 or fewer, file 1 every time.
    random: k frames drawn uniformly with replacement, in time order (the released CREMA-D loader);
      without `rng`, the segment centres."""
    if rule == "released-ks":
        if n_frames <= 6:
            return [0] * k
        seg = n_frames // k
        files = ([min(int(rng.integers(i * seg + 1, i * seg + seg + 1)), 9) for i in range(k)] if rng is not None
                 else [i * seg + max(seg // 2, 1) for i in range(k)])
        return [min(t, n_frames) - 1 for t in files]
    if rule == "random" and rng is not None:
        return sorted(int(i) for i in rng.integers(0, n_frames, k))
    if rule not in ("segments", "random"):
        raise ValueError(f"unknown frame rule {rule!r}")
    picks = []
    for s in range(k):
        lo = min(s * n_frames // k, n_frames - 1)
        hi = max((s + 1) * n_frames // k, lo + 1)
        picks.append(int(rng.integers(lo, hi)) if rng is not None else (lo + hi - 1) // 2)
    return picks


def random_crop_box(height: int, width: int, rng: np.random.Generator,
                    scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Box:
    """RandomResizedCrop's box: an area fraction in `scale` and an aspect ratio log-uniform in
    `ratio`, tried 10 times; else the largest centred box whose ratio is within `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top / height, left / width, (top + h) / height, (left + w) / width
    aspect = width / height
    w, h = width, height
    if aspect < ratio[0]:
        h = round(width / ratio[0])
    elif aspect > ratio[1]:
        w = round(height * ratio[1])
    top, left = (height - h) // 2, (width - w) // 2
    return top / height, left / width, (top + h) / height, (left + w) / width


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame header, without decoding; None if not found."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2), (1, cv2.IMREAD_COLOR))


def reduction_factor(box: Box, full: tuple[int, int] | None, size: int) -> int:
    """The largest of 8, 4, 2 at which the `box` of a (height, width) frame still has at least `size`
    pixels each way, else 1 (and 1 when the size is unknown)."""
    if full is None:
        return 1
    box_px = min((box[2] - box[0]) * full[0], (box[3] - box[1]) * full[1])
    return next(factor for factor, _ in _REDUCED if box_px / factor >= size or factor == 1)


def decode_frame(data: bytes, box: Box, size: int, flip: bool, out: np.ndarray) -> None:
    """Decode one JPEG into `out` (size x size x 3 RGB uint8): the `box` region resized to `size`,
    mirrored when `flip`. Decodes at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, much cheaper)
    when the box still has at least `size` pixels each way at that scale, so no detail is lost."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), dict(_REDUCED)[reduction_factor(box, jpeg_size(data), size)])
    if image is None:
        raise ValueError("JPEG does not decode")
    h, w = image.shape[:2]
    top, left = min(round(box[0] * h), h - 1), min(round(box[1] * w), w - 1)
    crop = image[top:max(round(box[2] * h), top + 1), left:max(round(box[3] * w), left + 1)]
    # Bilinear's 2x2 footprint already averages a shrink of up to 2x, so aliasing only needs INTER_AREA
    # (like PIL's antialiased resize, but 2-8x slower) beyond that: rare for crops, usual for eval resizes.
    area = max(crop.shape[:2]) > 2 * size
    resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if area else cv2.INTER_LINEAR)
    if flip:
        resized = cv2.flip(resized, 1)
    cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=out)
