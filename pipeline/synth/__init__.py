"""`rq synth`: a small dataset in the real raw layout of a recipe, drawn by ffmpeg's own sources.

Every class has a sound (a tone at its own pitch, pulsing at its own beat rate) and a picture (a box
of its own colour, shape and direction of motion on a grey background). Per clip and per modality,
the signal is the clip's own class with probability `*_informative`, otherwise a random other
class's, and noise of amplitude `*_noise` is added: so a model can learn either modality, and one
can be made to dominate. A set share of clips can have its sound or its picture corrupted (noise,
silence, blur, occlusion), so input quality varies per clip as in real data. All randomness is drawn
up front from `seed` (`plan.py`); each clip is then one ffmpeg call (`signals.py`), run in a process
pool, written to a temporary name and renamed into place (`command.py`). `--preset mosei` writes
CMU-MOSEI's feature files instead (`mosei.py`)."""
from rq.pipeline.synth.command import cli_synth
from rq.pipeline.synth.plan import plan
from rq.pipeline.synth.settings import (AUDIO_CORRUPTIONS, VISUAL_CORRUPTIONS, ClipSpec, SynthSettings, class_names,
                                        parse_size)
from rq.pipeline.synth.signals import class_picture, class_tone, render_clip

__all__ = ["AUDIO_CORRUPTIONS", "VISUAL_CORRUPTIONS", "ClipSpec", "SynthSettings", "class_names", "class_picture",
           "class_tone", "cli_synth", "parse_size", "plan", "render_clip"]
