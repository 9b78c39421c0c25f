"""The number of mapped batches a run creates is capped: Airflow's max_map_length is never hit."""

import pytest

from include.ingestion.mover import MAX_MAPPED_BATCHES, batches, capped_batch_size


@pytest.mark.parametrize("files", [0, 1, 499, 500, 501, 64_000, 100_000, 512_001, 10_000_000])
@pytest.mark.parametrize("size", [1, 50, 500, 20_000])
def test_batches_never_exceed_the_cap_and_never_shrink_below_the_wanted_size(files, size):
    capped = capped_batch_size(files, size, MAX_MAPPED_BATCHES)

    assert capped >= size
    assert -(-files // capped) <= MAX_MAPPED_BATCHES
    if files <= 100_000:
        assert len(batches(list(range(files)), capped)) <= MAX_MAPPED_BATCHES
    if -(-files // size) <= MAX_MAPPED_BATCHES:
        assert capped == size  # a run that fits keeps the configured size


def test_the_issue_cases_that_failed_on_max_map_length_now_fit_in_1024():
    # Default batch size above 512k files, MRI_REGISTER_BATCH_SIZE=50 above 51k files.
    for files, size in ((512_001, 500), (51_201, 50)):
        assert -(-files // size) > 1024
        assert -(-files // capped_batch_size(files, size, 1024)) <= 1024


def test_a_size_or_cap_below_one_is_refused():
    with pytest.raises(ValueError):
        capped_batch_size(10, 0, 5)
    with pytest.raises(ValueError):
        capped_batch_size(10, 5, 0)
