"""The validation holdout is decided by each image's subject (else its content) and the seed, never
by its position: a subject's images stay on one side, adding images moves none of the others, and
the order they arrive in changes nothing."""

import hashlib

import numpy as np
import pytest

from include.ml.data import holdout_keys, validation_split


def keys_and_targets(n: int, first: int = 0) -> tuple[list[str], list[int]]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(first, first + n)], [i % 2 for i in range(n)]


def held_out(keys, targets, fraction=0.15, seed=0) -> set[str]:
    _, validation = validation_split(keys, targets, fraction, seed)
    return {keys[i] for i in validation}


def test_adding_images_moves_none_of_the_others():
    keys, targets = keys_and_targets(400)
    more_keys, more_targets = keys_and_targets(40, first=400)

    before = held_out(keys, targets)
    after = held_out(keys + more_keys, targets + more_targets)

    assert before == after - set(more_keys)
    assert 0.10 < len(before) / len(keys) < 0.20


def test_the_order_of_the_images_changes_nothing_and_the_seed_does():
    keys, targets = keys_and_targets(200)
    order = np.random.default_rng(1).permutation(len(keys))

    shuffled = held_out([keys[i] for i in order], [targets[i] for i in order])

    assert shuffled == held_out(keys, targets)
    assert held_out(keys, targets, seed=1) != held_out(keys, targets)


def test_each_class_of_two_or_more_keeps_one_on_each_side():
    keys, targets = keys_and_targets(5)
    train, validation = validation_split(keys, targets, 0.01, 0)
    assert {targets[i] for i in validation} == {0, 1} and {targets[i] for i in train} == {0, 1}

    train, validation = validation_split(keys[:3], [0, 0, 1], 0.99, 0)
    assert np.asarray([0, 0, 1])[validation].tolist() == [0] and len(train) == 2  # a class of one trains

    assert validation_split(keys, targets, 0.0, 0)[1].tolist() == []


def subject_items(subjects: range, slices: int = 4) -> list[tuple[str, str, str, str]]:
    """``(uri, label, sha256, subject)`` members: ``slices`` images of each subject, one class a subject."""
    return [
        (f"raw/train/{s}-{n}.png", ("glioma", "meningioma")[s % 2], sha256_of(f"{s}-{n}"), f"patient-{s}")
        for s in subjects
        for n in range(slices)
    ]


def sha256_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def subject_sides(items, fraction: float, seed: int = 0) -> dict[str, set[str]]:
    """The sides (train, validation) each subject's images landed on."""
    targets = [("glioma", "meningioma").index(item[1]) for item in items]
    train, validation = validation_split(holdout_keys(items), targets, fraction, seed)
    sides: dict[str, set[str]] = {}
    for side, indices in (("train", train), ("validation", validation)):
        for i in indices:
            sides.setdefault(items[i][3], set()).add(side)
    return sides


@pytest.mark.parametrize("fraction", [0.001, 0.15, 0.5, 0.999])
def test_a_subject_is_held_out_or_trained_on_whole(fraction):
    items = subject_items(range(30))
    label_of = {subject: label for _, label, _, subject in items}

    for seed in range(5):
        sides = subject_sides(items, fraction, seed)

        assert all(len(on) == 1 for on in sides.values()), {s: on for s, on in sides.items() if len(on) > 1}
        # Each class keeps a subject on each side, moved whole where the draw left a side empty.
        for label in ("glioma", "meningioma"):
            assert set().union(*(on for s, on in sides.items() if label_of[s] == label)) == {"train", "validation"}


def test_adding_an_image_moves_no_subject():
    items = subject_items(range(60))
    before = {s for s, on in subject_sides(items, 0.15).items() if on == {"validation"}}

    one_more_slice = ("raw/train/7-9.png", "meningioma", sha256_of("7-9"), "patient-7")
    after = {s for s, on in subject_sides([*items, one_more_slice], 0.15).items() if on == {"validation"}}
    with_new_subject = subject_sides([*items, *subject_items(range(60, 61))], 0.15)

    assert before == after and 0 < len(before) < 60
    assert before == {s for s, on in with_new_subject.items() if on == {"validation"}} - {"patient-60"}


def test_images_without_a_subject_are_drawn_by_content_as_before():
    keys, targets = keys_and_targets(40)
    unchecked = [(f"raw/train/{i}.png", "glioma") for i in range(2)]

    assert holdout_keys([("uri", "glioma", keys[0], None), ("uri", "glioma", keys[1])]) == keys[:2]
    assert holdout_keys(unchecked) == ["raw/train/0.png", "raw/train/1.png"]
    assert holdout_keys([("uri", "glioma", keys[0], "7")]) == ["subject:7"]
    # Pinned: the holdout make demo's phantom (no subjects) trained with before subjects existed.
    assert validation_split(keys, targets, 0.15, 0)[1].tolist() == [5, 8, 9, 17, 18, 29, 39]
    assert validation_split(keys[:6], targets[:6], 0.01, 0)[1].tolist() == [4, 5]


def test_a_subject_of_two_classes_never_leaves_a_class_without_training_images():
    """Class 0 only in subject s1, class 1 in s1 and s2: holding s1 out for class 1 would take all of
    class 0's training images; training comes first."""
    keys = ["subject:s1", "subject:s1", "subject:s1", "subject:s2", "subject:s2", "subject:s2"]
    targets = [0, 0, 1, 1, 1, 1]
    for fraction in (0.001, 0.15, 0.5, 0.999):
        for seed in range(10):
            train, _ = validation_split(keys, targets, fraction, seed)
            assert {targets[i] for i in train} == {0, 1}, (fraction, seed)
