"""What `rq synth` is asked to make (`SynthSettings`, checked) and what it decided per clip (`ClipSpec`)."""
from dataclasses import dataclass, replace

from rq.manifests import CREMAD_EMOTIONS, read_class_list

PRESETS = ("kinetics", "cremad")
# The 12 CREMA-D sentences; only IEO was recorded at several intensity levels (LO/MD/HI), the rest XX.
CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
# Per-clip corruptions (pipeline/synth/signals.py draws them). An audio corruption erases the class's
# tone; a visual one hides (occlusion, noise) or smears (blur: the colour survives) the class's box.
AUDIO_CORRUPTIONS = ("noise", "silence")
VISUAL_CORRUPTIONS = ("blur", "occlusion", "noise")


@dataclass(frozen=True)
class SynthSettings:
    preset: str = "kinetics"
    clips: int = 40                 # in all, spread evenly over the classes
    classes: int = 4
    seconds: float | None = None    # None: 10 (kinetics), 2.5 (cremad; each clip 80-120% of it)
    seed: int = 0
    size: tuple[int, int] | None = None   # None: 640x360 (kinetics), 480x360 (cremad)
    fps: float | None = None        # None: 25 (kinetics), 30 (cremad)
    audio_informative: float = 0.9
    visual_informative: float = 0.6
    audio_noise: float = 0.1
    visual_noise: float = 0.1
    # "colour": the box's colour, shape and motion all tell the class (a tiny model reads the colour in a
    # few steps); "motion": the colour is drawn at random per clip, so only shape and direction of motion
    # tell it: informative, but slower to learn than the class's tone.
    visual_cue: str = "colour"
    # How far the box's colour stands out from the grey background: 1 = the full colour, 0.1 = a faint
    # tint that a model finds only after many steps (noise then hides it further).
    visual_contrast: float = 1.0
    val_fraction: float = 0.2       # kinetics: share of each class in val/
    # Input quality that varies per clip, as in real data: in each split, exactly round(f x clips) clips
    # get their sound (audio_corrupt) or their picture (visual_corrupt) corrupted by one of the listed
    # kinds, drawn per clip. Never both in one clip: every clip keeps one clean modality, so a model
    # has a reason to move its attention to it.
    audio_corrupt: float = 0.0
    visual_corrupt: float = 0.0
    audio_corruptions: tuple[str, ...] = ("noise",)
    visual_corruptions: tuple[str, ...] = ("occlusion",)

    def resolved(self) -> "SynthSettings":
        """Preset defaults filled in, every value checked; ValueError names the bad option."""
        kinetics = self.preset == "kinetics"
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        s = replace(self, seconds=self.seconds or (10.0 if kinetics else 2.5),
                    size=self.size or ((640, 360) if kinetics else (480, 360)), fps=self.fps or (25 if kinetics else 30),
                    audio_corruptions=tuple(self.audio_corruptions), visual_corruptions=tuple(self.visual_corruptions))
        available = len(read_class_list()) if kinetics else len(CREMAD_EMOTIONS)
        if not 1 <= s.classes <= available:
            raise ValueError(f"--classes must be 1..{available} for {s.preset}, not {s.classes}")
        if s.clips < 1:
            raise ValueError(f"--clips must be at least 1, not {s.clips}")
        if not kinetics and s.clips > 91 * len(CREMAD_SENTENCES) * s.classes:
            raise ValueError(f"--clips: CREMA-D names allow at most {91 * len(CREMAD_SENTENCES) * s.classes} clips")
        if not 0.1 <= s.seconds <= 600:
            raise ValueError(f"--seconds must be in 0.1..600, not {s.seconds}")
        if min(s.size) < 16 or any(v % 2 for v in s.size):
            raise ValueError(f"--size must be even numbers of at least 16 pixels, not {s.size[0]}x{s.size[1]}")
        if s.visual_cue not in ("colour", "motion"):
            raise ValueError(f"--visual-cue must be colour or motion, not {s.visual_cue!r}")
        for name in ("audio_informative", "visual_informative", "audio_noise", "visual_noise", "val_fraction",
                     "visual_contrast", "audio_corrupt", "visual_corrupt"):
            if not 0 <= getattr(s, name) <= 1:
                raise ValueError(f"--{name.replace('_', '-')} must be in 0..1, not {getattr(s, name)}")
        if s.audio_corrupt + s.visual_corrupt > 1:
            raise ValueError(f"--audio-corrupt {s.audio_corrupt:g} + --visual-corrupt {s.visual_corrupt:g} exceed 1 "
                             "(a clip never has both corrupted)")
        for name, kinds, known in (("audio", s.audio_corruptions, AUDIO_CORRUPTIONS),
                                   ("visual", s.visual_corruptions, VISUAL_CORRUPTIONS)):
            if not kinds or not set(kinds) <= set(known):
                raise ValueError(f"--{name}-corruption must be one or more of {', '.join(known)} (comma-separated), "
                                 f"not {','.join(kinds) or 'nothing'}")
        return s


@dataclass(frozen=True)
class ClipSpec:
    """One clip, fully decided: what the worker renders."""
    video: str                      # path relative to --out
    wav: str | None                 # cremad: the separate AudioWAV file
    split: str
    label: int
    audio_class: int                # whose sound it carries
    visual_class: int               # whose picture it carries
    seconds: float
    noise_seed: int
    pitch: float                    # per-clip jitter of the class's tone, x
    phase: float                    # where the box starts along its path, 0..1
    audio_corruption: str = ""      # "" = clean; else one of AUDIO_CORRUPTIONS
    visual_corruption: str = ""     # "" = clean; else one of VISUAL_CORRUPTIONS


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' -> (640, 360); ValueError otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like 640x360, not {text!r}") from None
    return w, h


def class_names(settings: SynthSettings) -> list[str]:
    return read_class_list()[: settings.classes] if settings.preset == "kinetics" else list(CREMAD_EMOTIONS[: settings.classes])
