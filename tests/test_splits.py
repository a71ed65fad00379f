"""The validation split carved out of train (seeded, exact, stratified; actor-disjoint under --split
speaker; a split list may name it) and the class list cut to the classes that have clips."""
from collections import Counter

from rq.pipeline.clips import Discovery
from rq.pipeline.recipes import RecipeOptions, cremad, folder, kinetics
from rq.pipeline.recipes.layout import carve_validation, keep_classes_with_clips


def _touch_cremad(raw, actors=range(1001, 1021)):
    (raw / "VideoFlash").mkdir(parents=True)
    (raw / "AudioWAV").mkdir()
    for a in actors:
        for s, e in (("DFA", "ANG"), ("IEO", "HAP"), ("TIE", "SAD"), ("IOM", "NEU")):
            (raw / "VideoFlash" / f"{a}_{s}_{e}_XX.flv").touch()
            (raw / "AudioWAV" / f"{a}_{s}_{e}_XX.wav").touch()
    return raw


def _touch_folder(raw, per_class=(20, 30, 10)):
    for c, n in zip("abc", per_class):
        (raw / "train" / c).mkdir(parents=True)
        (raw / "test" / c).mkdir(parents=True)
        for i in range(n):
            (raw / "train" / c / f"{c}{i}.mp4").touch()
        (raw / "test" / c / f"{c}t.mp4").touch()
    return raw


def _splits(found: Discovery) -> Counter:
    return Counter(c.split for c in found.clips)


def test_val_is_exact_stratified_seeded_and_comes_from_train(tmp_path):
    raw = _touch_folder(tmp_path / "raw")
    plain = folder.discover(raw, RecipeOptions())
    options = RecipeOptions(val_fraction=0.25, seed=1)
    carved = carve_validation(plain, options)
    assert _splits(carved) == {"train": 44, "val": 16, "test": 3}
    # of each class exactly round(0.25 * n), halves up: 20 -> 5, 30 -> 8 (7.5), 10 -> 3 (2.5)
    assert Counter(c.label_name for c in carved.clips if c.split == "val") == {"a": 5, "b": 8, "c": 3}
    before = {c.clip_id: c.split for c in plain.clips}
    assert all(before[c.clip_id] == "train" for c in carved.clips if c.split == "val")
    assert [c.split for c in carve_validation(plain, options).clips] == [c.split for c in carved.clips]
    other_seed = carve_validation(plain, RecipeOptions(val_fraction=0.25, seed=2))
    assert {c.clip_id for c in other_seed.clips if c.split == "val"} != {c.clip_id for c in carved.clips
                                                                          if c.split == "val"}
    assert carve_validation(plain, RecipeOptions(val_fraction=0)) == plain


def test_speaker_split_keeps_every_actor_in_one_split(tmp_path):
    raw = _touch_cremad(tmp_path / "raw")
    found = carve_validation(cremad.discover(raw, RecipeOptions(split="speaker", test_fraction=0.3)),
                             RecipeOptions(split="speaker", val_fraction=0.2))
    actors = {s: {c.clip_id[:4] for c in found.clips if c.split == s} for s in ("train", "val", "test")}
    assert all(actors.values())
    assert not (actors["train"] & actors["val"] or actors["train"] & actors["test"] or actors["val"] & actors["test"])
    n_train_actors = len(actors["train"]) + len(actors["val"])
    assert len(actors["val"]) == int(0.2 * n_train_actors + 0.5)
    # by clip instead, an actor's clips spread over the splits
    by_clip = carve_validation(cremad.discover(raw, RecipeOptions(test_fraction=0.3)), RecipeOptions(val_fraction=0.2))
    val = {c.clip_id[:4] for c in by_clip.clips if c.split == "val"}
    assert val & {c.clip_id[:4] for c in by_clip.clips if c.split == "train"}


def test_split_lists_can_name_val(tmp_path):
    raw = _touch_cremad(tmp_path / "raw", actors=(1001, 1002, 1003))
    (tmp_path / "tr.txt").write_text("1001_DFA_ANG_XX,ANG\n1001_IEO_HAP_XX,HAP\n1002_DFA_ANG_XX,ANG\n")
    (tmp_path / "my_val.txt").write_text("1002_IEO_HAP_XX,HAP\n")
    (tmp_path / "te.txt").write_text("1003_DFA_ANG_XX,ANG\n")
    options = RecipeOptions(split_lists=(f"train={tmp_path / 'tr.txt'}", str(tmp_path / "my_val.txt"),
                                         f"test={tmp_path / 'te.txt'}"), val_fraction=0.5)
    found = carve_validation(cremad.discover(raw, options), options)
    # the list's val is kept as it is: nothing more is carved out of train
    assert {c.clip_id: c.split for c in found.clips} == {
        "1001_DFA_ANG_XX": "train", "1001_IEO_HAP_XX": "train", "1002_DFA_ANG_XX": "train",
        "1002_IEO_HAP_XX": "val", "1003_DFA_ANG_XX": "test"}


def test_kinetics_val_folder_is_test_and_a_val_list_finds_train_files(tmp_path):
    raw = tmp_path / "raw"
    for rel in ("train/a_000000_000010.mp4", "train/b_000000_000010.mp4", "val/c_000000_000010.mp4"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).touch()
    (tmp_path / "train.txt").write_text("a_000000_000010 bowling\n")
    (tmp_path / "val.txt").write_text("b_000000_000010 bowling\n")
    (tmp_path / "test.txt").write_text("c_000000_000010 bowling\n")
    found = kinetics.discover(raw, RecipeOptions(split_lists=tuple(str(tmp_path / f"{s}.txt")
                                                                   for s in ("train", "val", "test"))))
    assert {c.clip_id: c.split for c in found.clips} == {"a_000000_000010": "train", "b_000000_000010": "val",
                                                         "c_000000_000010": "test"}
    assert not found.rejected


def test_folder_val_is_test_without_a_test_folder(tmp_path):
    raw = tmp_path / "raw"
    for rel in ("train/a/1.mp4", "val/a/2.mp4"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).touch()
    assert _splits(folder.discover(raw, RecipeOptions())) == {"train": 1, "test": 1}
    (raw / "test" / "a").mkdir(parents=True)
    (raw / "test" / "a" / "3.mp4").touch()
    assert _splits(folder.discover(raw, RecipeOptions())) == {"train": 1, "val": 1, "test": 1}


def test_class_list_keeps_only_classes_with_clips(tmp_path):
    raw = _touch_cremad(tmp_path / "raw", actors=(1001, 1002))
    found = cremad.discover(raw, RecipeOptions())
    kept, empty = keep_classes_with_clips(found)
    assert kept.classes == ("NEU", "HAP", "SAD", "ANG") and empty == ["FEA", "DIS"]
    assert all(kept.classes[c.label] == c.label_name for c in kept.clips)
    assert keep_classes_with_clips(kept) == (kept, [])
