"""The validation holdout is decided by each image's content and the seed, never by its position:
adding images moves none of the others, and the order they arrive in changes nothing."""

import hashlib

import numpy as np

from include.ml.data import validation_split


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
