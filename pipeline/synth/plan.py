"""Every clip decided up front from the seed: names in the recipe's raw layout, split, label, whose
sound and picture it carries, and which clips are corrupted."""
import math
from collections import Counter
from dataclasses import replace

import numpy as np

from rq.manifests import CREMAD_EMOTIONS
from rq.pipeline.recipes.layout import share
from rq.pipeline.synth.settings import CREMAD_SENTENCES, ClipSpec, SynthSettings

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def plan(settings: SynthSettings) -> list[ClipSpec]:
    """Every clip's name, split, label and signals, drawn from one seeded generator in a fixed order."""
    rng = np.random.default_rng(settings.seed)
    labels = [i % settings.classes for i in range(settings.clips)]
    names = _kinetics_names(rng, settings, labels) if settings.preset == "kinetics" else _cremad_names(rng, settings, labels)
    specs = []
    for (video, wav, split), label in zip(names, labels):
        seconds = settings.seconds if settings.preset == "kinetics" else round(settings.seconds * rng.uniform(0.8, 1.2), 2)
        specs.append(ClipSpec(
            video=video, wav=wav, split=split, label=label,
            audio_class=_signal_class(rng, label, settings.classes, settings.audio_informative),
            visual_class=_signal_class(rng, label, settings.classes, settings.visual_informative),
            seconds=seconds, noise_seed=int(rng.integers(1, 2 ** 31 - 1)),
            pitch=float(rng.uniform(0.97, 1.03)), phase=float(rng.uniform(0, 1))))
    return _with_corruptions(specs, settings)


def _with_corruptions(specs: list[ClipSpec], settings: SynthSettings) -> list[ClipSpec]:
    """In each split (all clips for cremad, whose split the recipe makes), exactly share(audio_corrupt)
    clips get an audio corruption and share(visual_corrupt) others a visual one, each kind drawn from
    its list. A generator of its own, so the other draws (and the files) stay those of a clean run."""
    rng = np.random.default_rng([settings.seed, 1])
    chosen: dict[int, tuple[str, str]] = {}
    for split in sorted({s.split for s in specs}):
        members = [i for i, s in enumerate(specs) if s.split == split]
        order = [members[j] for j in rng.permutation(len(members))]
        n_audio, n_visual = (share(f, len(members)) for f in (settings.audio_corrupt, settings.visual_corrupt))
        for rank, i in enumerate(order[:n_audio + n_visual]):
            kinds = settings.audio_corruptions if rank < n_audio else settings.visual_corruptions
            kind = str(kinds[int(rng.integers(len(kinds)))])
            chosen[i] = (kind, "") if rank < n_audio else ("", kind)
    return [replace(s, audio_corruption=chosen[i][0], visual_corruption=chosen[i][1]) if i in chosen else s
            for i, s in enumerate(specs)]


def _signal_class(rng: np.random.Generator, label: int, classes: int, informative: float) -> int:
    """The clip's own class with probability `informative`, else one of the other classes."""
    if classes == 1 or rng.uniform() < informative:
        return label
    return int((label + rng.integers(1, classes)) % classes)


def _kinetics_names(rng, settings: SynthSettings, labels: list[int]) -> list[tuple[str, None, str]]:
    """train/ or val/ + {youtube_id}_{start:06d}_{end:06d}.mp4; the last `val_fraction` of each class's
    clips (at least one of a class with two or more) go to val/."""
    total = Counter(labels)
    n_val = {c: max(int(n >= 2 and settings.val_fraction > 0), round(n * settings.val_fraction))
             for c, n in total.items()}
    seen: Counter = Counter()
    ids: set[str] = set()
    names = []
    for label in labels:
        seen[label] += 1
        split = "val" if seen[label] > total[label] - n_val[label] else "train"
        youtube_id = _youtube_id(rng, ids)
        start = int(rng.integers(0, 300))
        end = start + math.ceil(settings.seconds)
        names.append((f"{split}/{youtube_id}_{start:06d}_{end:06d}.mp4", None, split))
    return names


def _youtube_id(rng: np.random.Generator, taken: set[str]) -> str:
    """11 characters of YouTube's alphabet (a leading '-' included, as real ids have), unique."""
    while True:
        candidate = "".join(rng.choice(list(_ID_CHARS), 11))
        if candidate not in taken:
            taken.add(candidate)
            return candidate


def _cremad_names(rng, settings: SynthSettings, labels: list[int]) -> list[tuple[str, str, str]]:
    """VideoFlash/{actor}_{sentence}_{EMO}_{level}.flv + AudioWAV/{same}.wav, each (actor, sentence,
    emotion) used once; the split is the recipe's business (seeded or by speaker), so it is '-' here."""
    per_emotion: Counter = Counter()
    names = []
    for label in labels:
        k = per_emotion[label]
        per_emotion[label] += 1
        actor = 1001 + k // len(CREMAD_SENTENCES)
        sentence = CREMAD_SENTENCES[(k + label) % len(CREMAD_SENTENCES)]
        level = str(rng.choice(["LO", "MD", "HI"])) if sentence == "IEO" else "XX"
        stem = f"{actor}_{sentence}_{CREMAD_EMOTIONS[label]}_{level}"
        names.append((f"VideoFlash/{stem}.flv", f"AudioWAV/{stem}.wav", "-"))
    return names
