"""`rq predict`: a checkpoint's top classes and fused CLS attention shares on raw videos, no shards.

Each video goes through the very stage functions `rq preprocess` runs (rq.pipeline.stages.STAGES: probe,
frames, audio, spectrogram) with the stage settings the training shards were made with, and the
stage outputs, named as the tar members they would have become, go through the loader's own
`decode_clip` (segment-centre frames, plain resize: the evaluation path) and `to_device`. So a video
is seen exactly as a test sample of those shards would have been.

The settings come from the checkpoint's "preprocess" entry when it has one, else from the
manifest.json of the shards it was trained on (checked by its sha256).

Exit status: 0 when at least one video got a prediction, 1 when none did (each bad video is one
line on stderr), 2 for usage errors (no videos, an unreadable checkpoint or settings)."""
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rq.pipeline.console import err, fail, out as console, progress, summary_table
from rq.pipeline.cache import Cache
from rq.pipeline.clips import Clip
from rq.pipeline.config import PreprocessConfig
from rq.pipeline.errors import ClipError
from rq.pipeline.ffmpeg import FfmpegMissing
from rq.pipeline.runner import Job, plan_clip, process_clip
from rq.pipeline.stages import STAGES
from rq.train.trainer.checkpoint import read_run_checkpoint
from rq.train.data.sample import decode_clip
from rq.train.trainer.config import ConfigError, TrainConfig
from rq.train.data import model_inputs, to_device
from rq.train.trainer.distributed import resolve_device
from rq.train.trainer.build import build_model


class PredictError(Exception):
    """A checkpoint that cannot be used for prediction: one line, a usage error."""


@dataclass(frozen=True)
class Predictor:
    model: torch.nn.Module
    cfg: TrainConfig
    classes: list[str]
    spec_shape: tuple[int, int]
    stage_settings: dict               # stage name -> its frozen settings (None for probe)
    device: torch.device

    def stage_outputs(self, video: Path, timeout: float) -> dict[str, bytes]:
        """The shard members of one video, made by the runner `rq preprocess` uses (process_clip), in a
        throw-away cache; ClipError names the failing stage."""
        with tempfile.TemporaryDirectory(prefix="rq-predict-") as tmp:
            job = Job(Path(tmp), self.stage_settings, timeout=timeout)
            cache = Cache(job.cache_root)
            clip = Clip(video.name, video.absolute(), str(video), "test", 0, "")
            result = process_clip((clip, plan_clip(clip, job, cache)), job)
            if result.failure:
                raise ClipError(*result.failure)
            members = {}
            for stage in result.heads:
                members.update(cache.read(stage, result.keys[stage]) or {})
            return members

    @torch.no_grad()
    def predict(self, video: Path, top: int, timeout: float = 120.0) -> dict:
        if not video.is_file():
            raise ClipError("probe", "no such file")
        members = self.stage_outputs(video, timeout)
        # The label member is required by the loader's decoder; a raw video has none, so class 0 stands in.
        try:
            frames, spec, _, _ = decode_clip({"__key__": video.name, "cls": b"0", **members}, frames=self.cfg.frames,
                                             image_size=self.cfg.image_size, spec_shape=self.spec_shape,
                                             n_classes=len(self.classes), rng=None, frame_pick=self.cfg.frame_pick)
        except ValueError as e:
            raise ClipError("decode", str(e)) from None
        batch = to_device({"spec": torch.from_numpy(spec.copy())[None, None],
                           "frames": torch.from_numpy(frames)[None].permute(0, 1, 4, 2, 3),
                           "label": torch.zeros(1, dtype=torch.int64), "key": [video.name]}, self.device)
        out = self.model(model_inputs(batch))
        probs = out.logits.float().softmax(-1)[0]
        values, indices = probs.topk(min(top, len(self.classes)))
        fused = out.fusion[-1] if out.fusion else None
        return {"video": str(video), "frames": sum(n.endswith(".jpg") for n in members),
                "top": [{"class": self.classes[i], "index": int(i), "prob": round(float(p), 4)}
                        for p, i in zip(values.tolist(), indices.tolist())],
                "attention": {m: round(float(s[0]), 4) for m, s in fused.shares.items()} if fused is not None else None}


def load_predictor(ckpt: Path, device: str = "auto") -> Predictor:
    """The model of a checkpoint and the preprocessing settings of its training shards."""
    try:
        state = read_run_checkpoint(ckpt)
    except ConfigError as e:
        raise PredictError(str(e)) from None
    cfg = TrainConfig.from_dict(state["config"])
    if state.get("features"):
        raise PredictError(f"{ckpt}: a model of sequence features ({', '.join(state['features'])}); rq predict "
                           "reads raw videos")
    preprocess = state.get("preprocess") or _manifest_config(ckpt, cfg.shards, state.get("manifest_sha256"))
    try:
        settings = PreprocessConfig.from_dict(preprocess).stage_settings()
    except ValueError as e:
        raise PredictError(f"{ckpt}: {e}") from None
    versions = preprocess.get("stage_versions") or {}
    changed = [st.name for st in STAGES if st.name in versions and versions[st.name] != st.version]
    if changed:
        err.print(f"warning: {ckpt}: stage code changed since its shards were made ({', '.join(changed)}); "
                  "predictions may differ from what the model saw in training", markup=False)
    spec_shape = tuple(state["spec_shape"])
    dev = resolve_device(device)
    model = build_model(cfg, len(state["classes"]), spec_shape)
    model.load_state_dict(state["model"])
    return Predictor(model.to(dev).eval(), cfg, list(state["classes"]), spec_shape, settings, dev)


def _manifest_config(ckpt: Path, shards: str, sha256: str | None) -> dict:
    """The stage settings recorded in the training shards' manifest, if it is still the same file."""
    manifest = Path(shards) / "manifest.json"
    if not manifest.is_file():
        raise PredictError(f"{ckpt}: carries no preprocessing settings and the manifest of its shards "
                           f"({manifest}) is gone")
    raw = manifest.read_bytes()
    if sha256 and hashlib.sha256(raw).hexdigest() != sha256:
        raise PredictError(f"{manifest}: changed since {ckpt} was trained (sha256 differs); its preprocessing "
                           "settings may not be the ones the model was trained with")
    return json.loads(raw)["config"]


def predict(ckpt: Path, videos: list[Path], top: int = 5, device: str = "auto",
            timeout: float = 120.0) -> tuple[list[dict], list[dict]]:
    """(predictions, errors) for `videos`; a bad video is an error entry and a line on stderr."""
    predictor = load_predictor(ckpt, device)
    results, errors = [], []
    bar = progress(videos, desc="predict", unit="video")
    for video in bar:
        try:
            results.append(predictor.predict(Path(video), top, timeout))
        except ClipError as e:
            errors.append({"video": str(video), "stage": e.stage, "reason": e.reason})
            bar.write(f"error: {video}: {e.stage}: {e.reason}", file=sys.stderr)  # above the bar, own line
    return results, errors


def cli_predict(ckpt: Path | None, videos: list[Path], top: int, as_json: bool, device: str, timeout: float) -> None:
    """`rq predict`: a table (or JSON) on stdout, one line per bad video on stderr."""
    if ckpt is None:
        fail("--ckpt PATH is required: a last.pt or best.pt of rq train")
    if not videos:
        fail("give at least one VIDEO")
    if top < 1:
        fail(f"--top must be at least 1, not {top}")
    start = time.perf_counter()
    try:
        results, errors = predict(ckpt, videos, top, device, timeout)
    except (PredictError, ConfigError, RuntimeError) as e:  # RuntimeError: a device torch cannot use
        fail(" ".join(str(e).split()))
    except FfmpegMissing as e:
        fail(str(e), code=1)
    if as_json:
        print(json.dumps({"ckpt": str(ckpt), "predictions": results, "errors": errors}, indent=1))
    else:
        summary_table(f"rq predict: {len(results)} of {len(videos)} videos ({time.perf_counter() - start:.1f} s)"
                      + (f", {len(errors)} failed" if errors else ""),
                      ["video", f"top {top} (probability)", "attn audio", "attn visual"],
                      [[r["video"], "\n".join(f"{t['class']} {t['prob']:.3f}" for t in r["top"]),
                        *((r["attention"]["audio"], r["attention"]["visual"]) if r["attention"] else ("-", "-"))]
                       for r in results])
        console.print("attention: share of the fused CLS token's attention on audio vs visual tokens "
                      "(the rest is on itself)", markup=False)
    if not results:
        raise SystemExit(1)
