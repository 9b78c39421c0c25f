"""A sweep entry naming several seeds trains one model per seed, and the sweep reports their spread."""

import pytest

from include.ml.hyperparameters import expand_seeds, seed_spread


def test_an_entry_with_seeds_becomes_one_fine_tune_per_seed_and_the_others_stay():
    sweep = [{"learning_rate": 0.002, "seeds": [0, 1, 2]}, {"learning_rate": 0.001}]

    assert expand_seeds(sweep, "sweep") == [
        {"learning_rate": 0.002, "seed": 0},
        {"learning_rate": 0.002, "seed": 1},
        {"learning_rate": 0.002, "seed": 2},
        {"learning_rate": 0.001},
    ]


@pytest.mark.parametrize("seeds", [[], 3, [0, "1"], [True]])
def test_seeds_that_are_not_a_list_of_whole_numbers_are_refused_naming_the_entry(seeds):
    with pytest.raises(ValueError, match=r"sweep entry 1: seeds=.* should be a non-empty list of whole numbers"):
        expand_seeds([{}, {"seeds": seeds}], "sweep")
    with pytest.raises(ValueError, match="without a seed beside it"):
        expand_seeds([{"seeds": [1], "seed": 2}], "sweep")


def result(seed: int, roc_auc: float, learning_rate: float = 0.002) -> dict:
    return {"hyperparameters": {"learning_rate": learning_rate, "seed": seed}, "validation": {"roc_auc": roc_auc}}


def test_the_spread_is_the_mean_and_sample_deviation_of_each_set_of_hyperparameters_over_its_seeds():
    results = [result(0, 0.96), result(1, 0.98), result(2, 0.97), result(0, 0.90, learning_rate=0.001)]

    [spread] = seed_spread(results)

    assert spread["hyperparameters"] == {"learning_rate": 0.002} and spread["seeds"] == [0, 1, 2]
    assert spread["mean"] == pytest.approx(0.97) and spread["sd"] == pytest.approx(0.01)
