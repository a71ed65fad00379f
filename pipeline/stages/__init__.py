"""The stage registry. A stage is a pure function of (input file, upstream outputs, its own settings)
-> named bytes, one module each. Its `version` is its code version: bump it whenever the stage's
output changes, and every cached result of that stage (and only that stage and what reads it) is
recomputed. `rq.pipeline.runner` runs a clip through them."""
from collections.abc import Callable
from dataclasses import dataclass

from rq.pipeline.stages import audio, frames, probe, spectrogram
from rq.pipeline.stages.settings import AudioDecodeSettings, FrameSettings, SpectrogramSettings


@dataclass(frozen=True)
class Stage:
    name: str
    version: int
    fn: Callable
    needs: tuple[str, ...]
    settings_type: type | None
    reads: str | None        # the file it reads: "video", "audio" (CREMA-D's wav when given) or None
    in_shard: bool           # whether its members go into the shard sample


STAGES: tuple[Stage, ...] = (
    Stage("probe", probe.VERSION, probe.probe_stage, (), None, "video", False),
    Stage("frames", frames.VERSION, frames.frames_stage, ("probe",), FrameSettings, "video", True),
    Stage("audio", audio.VERSION, audio.audio_stage, ("probe",), AudioDecodeSettings, "audio", False),
    Stage("spectrogram", spectrogram.VERSION, spectrogram.spectrogram_stage, ("audio",), SpectrogramSettings,
          None, True),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
BY_NAME = {s.name: s for s in STAGES}
