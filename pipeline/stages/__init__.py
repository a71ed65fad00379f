"""The stage registry. A stage is a pure function of (input file, upstream outputs, its own settings)
-> named bytes, one module each. Its `version` is its code version: bump it whenever the stage's
output changes, and every cached result of that stage (and only that stage and what reads it) is
recomputed. `rq.pipeline.runner` runs a clip through them.

A recipe runs one stage set: the video recipes `STAGES`; CMU-MOSEI (`mosei_stages`) its own, whose
stages read one part of feature files that every segment shares (`part`)."""
from collections.abc import Callable
from dataclasses import dataclass

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
    part: bool = False       # fn also takes the clip's `part`: which segment of a shared file it reads


STAGES: tuple[Stage, ...] = (
    Stage("probe", probe.VERSION, probe.probe_stage, (), None, "video", False),
    Stage("frames", frames.VERSION, frames.frames_stage, ("probe",), FrameSettings, "video", True),
    Stage("audio", audio.VERSION, audio.audio_stage, ("probe",), AudioDecodeSettings, "audio", False),
    Stage("spectrogram", spectrogram.VERSION, spectrogram.spectrogram_stage, ("audio",), SpectrogramSettings,
          None, True),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
BY_NAME = {s.name: s for s in STAGES}


def mosei_stages(source: str, covarep: bool) -> tuple[Stage, ...]:
    """CMU-MOSEI's stages: from the SDK's computational sequences ("csd": words, then FACET and, when
    its file is there, COVAREP aligned to them) or from MultiBench's pickle ("pickle": one sample file
    each); then `steps`."""
    if source == "pickle":
        rows = (Stage("sample", features.VERSION, features.sample_stage, (), None, "sample", False),)
    else:
        rows = (Stage("words", features.VERSION, features.words_stage, (), None, "words", False, True),
                Stage("facet", features.VERSION, features.facet_stage, ("words",), None, "facet", False, True))
        if covarep:
            rows += (Stage("covarep", features.VERSION, features.covarep_stage, ("words",), None, "covarep", False,
                           True),)
    return rows + (Stage("steps", steps.VERSION, steps.steps_stage, tuple(s.name for s in rows), StepsSettings,
                         None, True),)
