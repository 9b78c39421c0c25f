"""What the registry's pixel hashes call the same image, and the near-duplicate search against
comparing every pair."""

import io

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from include.quality.near_duplicates import close_pairs, hash_bytes
from include.registry.pixels import PERCEPTUAL_BITS, perceptual_hash, pixel_hash
from include.registry.records import Limits, inspect_image
from tests.support.uploads import encoded, hash_distance, head

LIMITS = Limits(min_side=16, max_pixels=10_000_000)


def test_the_same_pixels_in_other_bytes_have_one_pixel_hash():
    plain = encoded(head(1))
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "exported again")
    with_text = encoded(head(1), pnginfo=text)

    assert plain != with_text
    assert inspect_image(plain, LIMITS).pixel_hash == inspect_image(with_text, LIMITS).pixel_hash


def test_mode_and_size_are_part_of_the_pixel_hash():
    data = bytes(range(64))
    gray_8x8 = Image.frombytes("L", (8, 8), data)
    gray_4x16 = Image.frombytes("L", (4, 16), data)
    palette = Image.frombytes("P", (8, 8), data)

    assert len({pixel_hash(gray_8x8), pixel_hash(gray_4x16), pixel_hash(palette)}) == 3


def test_a_resized_recompressed_copy_keeps_its_perceptual_hash_within_the_default_threshold():
    original = perceptual_hash(head(2))
    copy = Image.open(io.BytesIO(encoded(head(2).resize((80, 80)), "JPEG", quality=60)))

    assert len(original) * 4 == PERCEPTUAL_BITS
    assert hash_distance(original, perceptual_hash(copy)) <= 12
    assert min(hash_distance(original, perceptual_hash(head(seed))) for seed in range(3, 30)) > 12


def test_sixteen_bit_gray_is_hashed_as_it_looks_not_clipped_to_white():
    twelve_bit = np.asarray(head(4), dtype=np.uint16) * 16  # 12-bit values in a 16-bit container
    wide = Image.fromarray(twelve_bit)

    assert wide.mode.startswith("I;16")
    assert hash_distance(perceptual_hash(wide), perceptual_hash(head(4))) <= 4


@pytest.mark.parametrize("max_bits", [0, 3, 12, 31])
def test_close_pairs_finds_what_comparing_every_pair_finds(max_bits):
    rng = np.random.default_rng(max_bits)
    ours = rng.integers(0, 2, (300, PERCEPTUAL_BITS), dtype=np.uint8)
    theirs = rng.integers(0, 2, (200, PERCEPTUAL_BITS), dtype=np.uint8)
    for i, j, flips in [(0, 0, 0), (5, 7, max_bits), (9, 8, max_bits + 1), (42, 199, max_bits // 2)]:
        theirs[j] = ours[i]
        theirs[j, rng.choice(PERCEPTUAL_BITS, flips, replace=False)] ^= 1

    every_pair = (ours[:, None, :] != theirs[None, :, :]).sum(axis=2)
    rows, columns = np.nonzero(every_pair <= max_bits)
    expected = sorted((int(i), int(j), int(every_pair[i, j])) for i, j in zip(rows, columns, strict=True))

    assert close_pairs(np.packbits(ours, axis=1), np.packbits(theirs, axis=1), max_bits) == expected
    assert (5, 7, max_bits) in expected and not any(pair[:2] == (9, 8) for pair in expected)


def test_hash_bytes_reads_hex_hashes_as_rows_of_bytes():
    assert hash_bytes(["80" + "00" * 31, "00" * 31 + "01"]).tolist() == [[128] + [0] * 31, [0] * 31 + [1]]
