"""One sample's tar members -> what a batch holds: the picked frames cropped to uint8, the
spectrogram, the label. Raises ValueError naming the member at fault; the loader records and skips."""
import io
import json
import math

import numpy as np

from rq.train.data.augment import FULL, decode_frame, jpeg_size, pick_frames, random_crop_box
from rq.train.data.gpu_decode import UndecodedFrames
from rq.train.data.members import FRAME_MEMBER


def decode_clip(sample: dict, *, frames: int, image_size: int, spec_shape: tuple[int, int], n_classes: int,
                rng: np.random.Generator | None, crop_scale: tuple[float, float] = (0.08, 1.0),
                frame_crop: str = "clip", frame_pick: str = "segments",
                pick_rng: np.random.Generator | None = None, decode: bool = True) -> tuple:
    """(frames k x S x S x 3 uint8 RGB, spectrogram (F, T), label, key). With `rng` (training):
    frames picked at random by the `frame_pick` rule (augment.pick_frames), a RandomResizedCrop box
    and flip for all of the clip's frames (frame_crop "clip") or for each frame (frame_crop "frame",
    the released code); without: fixed picks (random ones from `pick_rng` when given: the released
    CREMA-D evaluation), whole frame resized. Only the picked JPEGs are decoded; with `decode=False`
    none is, and the frames come as UndecodedFrames with their boxes (the GPU input path decodes them)."""
    names = real_frames(sample)
    for member in ("cls", "spec.npy"):
        if member not in sample:
            raise ValueError(f"no {member} member")
    if not names:
        raise ValueError("no frames")
    label = int(sample["cls"])
    if not 0 <= label < n_classes:
        raise ValueError(f"label {label} outside 0..{n_classes - 1}")
    spec = npy_view(sample["spec.npy"])
    if spec.shape != spec_shape:
        raise ValueError(f"spectrogram shape {spec.shape}, expected {spec_shape}")
    if not np.isfinite(spec).all():   # one NaN would make the loss, then every weight, NaN
        raise ValueError(f"spec.npy holds {spec.size - int(np.isfinite(spec).sum())} non-finite values (NaN or inf)")
    picks = [names[i] for i in pick_frames(len(names), frames, rng if rng is not None else pick_rng, frame_pick)]
    boxes, flips, box, flip = [], [], FULL, False
    for i, name in enumerate(picks):
        if rng is not None and (i == 0 or frame_crop == "frame"):
            size = jpeg_size(sample[name])
            if size is None:
                raise ValueError(f"{name}: not a JPEG")
            box, flip = random_crop_box(*size, rng, scale=crop_scale), bool(rng.integers(2))
        boxes.append(box)
        flips.append(flip)
    if not decode:
        return UndecodedFrames([sample[n] for n in picks], boxes, flips, image_size), spec, label, sample["__key__"]
    out = np.empty((frames, image_size, image_size, 3), np.uint8)
    for name, frame, box, flip in zip(picks, out, boxes, flips):
        try:
            decode_frame(sample[name], box, image_size, flip, frame)
        except ValueError as exn:
            raise ValueError(f"{name}: {exn}") from None
    return out, spec, label, sample["__key__"]


def real_frames(sample: dict) -> list[str]:
    """The sample's frame members in time order, less the padding: rq pads a short clip's frames by
    repeating its last one, so that every sample of a dataset has the same member names, and its json
    says how many members that added (`frames_padded`). Frames are picked among the real ones only, so
    padding never changes what is trained on. A sample without it (older shards, other tools) has none."""
    names = sorted(name for name in sample if FRAME_MEMBER.fullmatch(name))
    if "json" not in sample:
        return names
    try:
        meta = json.loads(sample["json"])
    except ValueError:   # cannot tell the real frames from the padding
        raise ValueError("json: not valid JSON") from None
    padded = meta.get("frames_padded", 0) if isinstance(meta, dict) else 0
    if type(padded) is not int or not 0 <= padded < max(1, len(names)):
        raise ValueError(f"json: frames_padded {repr(padded)[:40]} is not a count below the {len(names)} frames")
    return names[:len(names) - padded]


def npy_view(data: bytes) -> np.ndarray:
    """An .npy file's array as a view of its bytes: np.load on a BytesIO copies it in chunks, ~10x slower."""
    header = io.BytesIO(data[:4096])
    version = np.lib.format.read_magic(header)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(header)
    if fortran or dtype.hasobject:
        raise ValueError("spectrogram .npy must be a C-ordered numeric array")
    return np.frombuffer(data, dtype, count=math.prod(shape), offset=header.tell()).reshape(shape)
