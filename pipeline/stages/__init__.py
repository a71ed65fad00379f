"""The stage registry. A stage is a pure function of (input file, upstream outputs, its own settings)
-> named bytes, or (named bytes, meta): meta is a small JSON object kept in the cache entry's header,
readable without the bytes (the frames' times). One module each. Its `version` is its code version:
bump it whenever the stage's output changes, and every cached result of that stage (and only that
stage and what reads it) is recomputed. `rq.pipeline.runner` runs a clip through them.

The stages that read a media file (`decodes`: probe, frames, audio) are computed together, in one
ffmpeg run per file (`decode_together`); each keeps its own settings and cache entry, so changing one
stage's settings reruns only that stage.

A recipe runs one stage set: the video recipes `STAGES`; CMU-MOSEI (`mosei_stages`) its own, whose
stages read one part of feature files that every segment shares (`part`)."""
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rq.pipeline.decode import decode
from rq.pipeline.errors import ClipError
from rq.pipeline.stages import audio, features, frames, probe, spectrogram, steps
from rq.pipeline.stages.settings import AudioDecodeSettings, FrameSettings, SpectrogramSettings, StepsSettings


@dataclass(frozen=True)
class Stage:
    name: str
    version: int
    fn: Callable
    needs: tuple[str, ...]
    settings_type: type | None
    reads: str | None        # the file it reads: "video", "audio" (CREMA-D's wav when given) or None
    in_shard: bool           # whether its members go into the shard sample
    decodes: bool = False    # computed by the file's one ffmpeg run (decode_together)
    part: bool = False       # fn also takes the clip's `part`: which segment of a shared file it reads


STAGES: tuple[Stage, ...] = (
    Stage("probe", probe.VERSION, probe.probe_stage, (), None, "video", False, True),
    Stage("frames", frames.VERSION, frames.frames_stage, (), FrameSettings, "video", True, True),
    Stage("audio", audio.VERSION, audio.audio_stage, (), AudioDecodeSettings, "audio", False, True),
    Stage("spectrogram", spectrogram.VERSION, spectrogram.spectrogram_stage, ("audio",), SpectrogramSettings,
          None, True),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
BY_NAME = {s.name: s for s in STAGES}


def decode_together(path: Path, wanted: dict[str, object], timeout: float) -> dict[str, object]:
    """The outputs of the `decodes` stages named in `wanted` (name -> its settings) for one file, from
    one ffmpeg run: name -> members or (members, meta), or the ClipError of that stage. When the run
    itself fails, only the stage it failed in is in the answer."""
    frame_settings, audio_settings = wanted.get("frames"), wanted.get("audio")
    if frame_settings is None and audio_settings is None:
        try:
            return {"probe": probe.probe_stage(path, {}, None, timeout)}
        except ClipError as e:
            return {e.stage: e}
    try:
        decoded = decode(path, frames=frame_settings, audio=audio_settings, timeout=timeout,
                         on_frame=frames.jpeg_encoder(frame_settings) if frame_settings else lambda f: f,
                         header_stage="probe" if "probe" in wanted else None)
    except ClipError as e:
        return {e.stage: e}
    makers = {"probe": lambda: probe.from_info(decoded.info), "frames": lambda: frames.from_decoded(decoded),
              "audio": lambda: audio.from_decoded(decoded, audio_settings)}
    results: dict[str, object] = {}
    for name in wanted:
        try:
            results[name] = makers[name]()
        except ClipError as e:
            results[name] = e
    return results


def mosei_stages(source: str, covarep: bool) -> tuple[Stage, ...]:
    """CMU-MOSEI's stages: from the SDK's computational sequences ("csd": words, then FACET and, when
    its file is there, COVAREP aligned to them) or from MultiBench's pickle ("pickle": one sample file
    each); then `steps`."""
    if source == "pickle":
        rows = (Stage("sample", features.VERSION, features.sample_stage, (), None, "sample", False),)
    else:
        rows = (Stage("words", features.VERSION, features.words_stage, (), None, "words", False, part=True),
                Stage("facet", features.VERSION, features.facet_stage, ("words",), None, "facet", False,
                      part=True))
        if covarep:
            rows += (Stage("covarep", features.VERSION, features.covarep_stage, ("words",), None, "covarep", False,
                           part=True),)
    return rows + (Stage("steps", steps.VERSION, steps.steps_stage, tuple(s.name for s in rows), StepsSettings,
                         None, True),)
