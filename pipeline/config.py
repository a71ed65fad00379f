"""The preprocessing settings: what determines a shards folder's content, one frozen object built once
by the CLI from the recipe's defaults and the options given. `to_dict` is the manifest's "config"
(and what checkpoints carry), `from_dict` reads it back (rq predict rebuilds the stages from it), for
manifests of any rq version. How a run is executed (workers, cache folder, timeouts) is not part of
it: those options never change the output. `Options` is the command line's view of both."""
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from rq.pipeline.recipes.layout import RecipeOptions

from rq.pipeline.stages.frontends import resolve as resolve_audio
from rq.pipeline.stages.settings import AudioDecodeSettings, FrameSettings, SpectrogramSettings, settings_dict


@dataclass(frozen=True)
class RecipeSettings:
    """Which clips a recipe takes and how it splits them."""
    classes: str | None = None            # class list file replacing the recipe's own list
    split_list: tuple[str, ...] = ()      # "[SPLIT=]FILE" lists of the clips of a split
    split: str = "clip"                   # seeded split unit without a list: clip, or speaker
    test_fraction: float = 0.1            # seeded split: share of clips (or speakers) in test
    label_field: str = "label"            # wds recipe: the json field that holds the label
    val_fraction: float = 0.1             # share of the train clips (or speakers) carved out as val


@dataclass(frozen=True)
class PreprocessConfig:
    frames: FrameSettings = field(default_factory=FrameSettings)
    audio: AudioDecodeSettings = field(default_factory=AudioDecodeSettings)
    spectrogram: SpectrogramSettings = field(default_factory=SpectrogramSettings)
    shard_size_mb: float = 100.0          # largest shard
    seed: int = 0                         # sample order in the shards, seeded splits
    recipe: RecipeSettings = field(default_factory=RecipeSettings)

    def recipe_options(self, extract_to: Path | None = None) -> RecipeOptions:
        """What a recipe's discover() takes; `extract_to`: a folder for files a recipe unpacks (wds)."""
        r = self.recipe
        return RecipeOptions(Path(r.classes) if r.classes else None, r.split_list, r.split, r.test_fraction, self.seed,
                             r.label_field, extract_to, val_fraction=r.val_fraction)

    def stage_settings(self) -> dict:
        """Stage name -> its settings, as the runner and the cache keys take them."""
        return {"probe": None, "frames": self.frames, "audio": self.audio, "spectrogram": self.spectrogram}

    def to_dict(self, stage_versions: dict[str, int]) -> dict:
        """The manifest's "config" (key order and names are part of the manifest's bytes: keep them)."""
        r = self.recipe
        return {"frames": settings_dict(self.frames), "audio": asdict(self.audio),
                "spectrogram": settings_dict(self.spectrogram),
                "shard_size_mb": self.shard_size_mb, "seed": self.seed, "stage_versions": dict(stage_versions),
                "recipe_options": {"classes": r.classes, "split_list": list(r.split_list), "split": r.split,
                                   "test_fraction": r.test_fraction, "label_field": r.label_field,
                                   "val_fraction": r.val_fraction}}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """A manifest's "config" back as settings. ValueError (one line) when it is not one."""
        if not isinstance(d, dict):
            raise ValueError("the preprocessing config is not a JSON object")
        try:
            stages = {name: _settings(t, d[name]) for name, t in
                      (("frames", FrameSettings), ("audio", AudioDecodeSettings), ("spectrogram", SpectrogramSettings))}
            r = d.get("recipe_options") or {}
            # manifests written before the val split had none: val_fraction 0 is what made them
            recipe = RecipeSettings(r.get("classes"), tuple(r.get("split_list") or ()), r.get("split", "clip"),
                                    r.get("test_fraction", 0.1), r.get("label_field", "label"),
                                    r.get("val_fraction", 0.0))
            return cls(**stages, shard_size_mb=d.get("shard_size_mb", 100.0), seed=d.get("seed", 0), recipe=recipe)
        except KeyError as e:
            raise ValueError(f"the preprocessing config has no {e.args[0]!r} entry") from None


def _settings(cls, values) -> object:
    """A stage's settings from its dict; keys this rq version does not know are an error (they would
    change the output in a way it cannot reproduce), missing ones take today's default."""
    if not isinstance(values, dict):
        raise ValueError(f"{cls.__name__} is not a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{cls.__name__} has settings this rq version does not know: {', '.join(unknown)}")
    return cls(**values)


_R, _F, _A, _S = RecipeSettings, FrameSettings, AudioDecodeSettings, SpectrogramSettings


@dataclass(frozen=True)
class Options:
    """Every `rq preprocess` option as the command line gives it; None means the recipe's default.
    The defaults are the settings classes' own; `config` turns these into the PreprocessConfig."""
    raw: Path | None = None
    out: Path | None = None
    frame_size: int = _F.frame_size
    jpeg_quality: int = _F.jpeg_quality
    frame_times: str = _F.times
    frame_decode: str = _F.frame_decode
    audio_features: str = _S.audio_features
    sample_rate: int | None = None        # None here and below: the front end's default (frontends.resolve)
    audio_seconds: float | None = None
    audio_pad: str = _S.audio_pad
    missing_audio: str = _A.missing_audio
    n_fft: int | None = None
    hop_length: int | None = None
    shard_size: float = PreprocessConfig.shard_size_mb
    workers: int | None = None
    seed: int = PreprocessConfig.seed
    timeout: float = 120.0
    max_failure_rate: float = 0.05
    cache: Path | None = None
    hash_content: bool = False
    force: tuple[str, ...] = ()
    dry_run: bool = False
    classes: Path | None = None
    split_list: tuple[str, ...] = ()
    split: str = _R.split
    test_fraction: float = _R.test_fraction
    val_fraction: float = _R.val_fraction
    frames_per_clip: int | None = None
    label_field: str = _R.label_field
    executor: str = "process"             # how clips run: rq.pipeline.executors (never changes the output)
    ray_address: str | None = None

    def config(self, recipe_module) -> PreprocessConfig:
        """Raises ValueError (one line) for audio options that do not fit the front end."""
        audio, spectrogram = resolve_audio(
            self.audio_features, recipe_module.AUDIO_SECONDS, sample_rate=self.sample_rate,
            audio_seconds=self.audio_seconds, audio_pad=self.audio_pad, n_fft=self.n_fft,
            hop_length=self.hop_length, missing_audio=self.missing_audio)
        return PreprocessConfig(
            frames=FrameSettings(frame_size=self.frame_size, jpeg_quality=self.jpeg_quality, times=self.frame_times,
                                 frame_decode=self.frame_decode),
            audio=audio, spectrogram=spectrogram,
            shard_size_mb=self.shard_size, seed=self.seed,
            recipe=RecipeSettings(str(self.classes) if self.classes else None, tuple(self.split_list), self.split,
                                  self.test_fraction, self.label_field, self.val_fraction))
