"""CREMA-D as downloaded: `VideoFlash/*.flv` (frames) and `AudioWAV/*.wav` (audio), names like
`1001_DFA_ANG_XX` (actor, sentence, emotion, level); the label is the emotion. Split: split lists
when given, else seeded by clip, or by speaker with `--split speaker` (no actor in two splits: the actor
is each clip's `group`, which the validation carve keeps whole too)."""
from pathlib import Path

from rq.manifests import CREMAD_EMOTIONS

from rq.pipeline.clips import Discovery, Rejected
from rq.pipeline.recipes.layout import LayoutError, RecipeOptions, class_list, make_clip, read_split_lists, seeded_split

AUDIO_SECONDS = 3.0
FRAMES_PER_CLIP = 1


def discover(raw: Path, options: RecipeOptions) -> Discovery:
    video_dir, audio_dir = raw / "VideoFlash", raw / "AudioWAV"
    if not video_dir.is_dir() or not audio_dir.is_dir():
        raise LayoutError(f"{raw}: not a CREMA-D download (needs VideoFlash/ and AudioWAV/ folders)")
    if options.split not in ("clip", "speaker"):
        raise LayoutError(f"--split {options.split}: must be clip or speaker")
    classes = class_list(options.classes) if options.classes else CREMAD_EMOTIONS
    videos = {p.stem: p for p in video_dir.glob("*.flv") if p.is_file()}
    wavs = {p.stem: p for p in audio_dir.glob("*.wav") if p.is_file()}
    listed, rejected = read_split_lists(options.split_lists) if options.split_lists else (None, [])
    conflicted = {r.source for r in rejected}   # listed twice with different splits: reported, left out
    clips = []
    for name in sorted(videos.keys() | wavs.keys()):
        video, wav = videos.get(name), wavs.get(name)
        source = (video or wav).relative_to(raw).as_posix()
        fields = name.split("_")
        if video is None or wav is None:
            missing = f"VideoFlash/{name}.flv" if video is None else f"AudioWAV/{name}.wav"
            rejected.append(Rejected(source, f"no matching {missing}"))
        elif len(fields) < 3 or fields[2] not in classes:
            rejected.append(Rejected(source, f"third name field is not one of the classes {', '.join(classes)}"))
        elif name in conflicted:
            continue
        elif listed is not None and name not in listed:
            rejected.append(Rejected(source, "not in any --split-list"))
        else:
            speaker = fields[0] if options.split == "speaker" else ""
            split = listed[name][0] if listed is not None else seeded_split(options, speaker or name)
            clips.append(make_clip(raw, name, video, split, classes.index(fields[2]), classes, audio=wav,
                                   group=speaker))
    return Discovery(tuple(clips), classes, tuple(rejected))
