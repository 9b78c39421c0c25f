"""Command line: ``python -m launcher.phantom --out data/phantom --per-class 330 --seed 0``."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from launcher.phantom.contact_sheet import write_contact_sheet
from launcher.phantom.generate import IMAGE_FORMATS, PhantomConfig, generate_dataset

logger = logging.getLogger("launcher.phantom")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = PhantomConfig()
    parser = argparse.ArgumentParser(prog="python -m launcher.phantom", description=__doc__)
    parser.add_argument(
        "--out", type=Path, required=True, help="dataset root (train/, test/, labels.csv, manifest.csv)"
    )
    parser.add_argument("--per-class", type=int, default=defaults.per_class, help="images per class, both splits")
    parser.add_argument(
        "--slices-per-subject", type=int, default=defaults.slices_per_subject, help="slices of one subject"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="master seed")
    parser.add_argument("--format", choices=IMAGE_FORMATS, default=defaults.image_format, help="file format")
    parser.add_argument("--difficulty", type=float, default=defaults.difficulty, help="0 = easy .. 1 = hard")
    parser.add_argument("--size", type=int, default=defaults.size, help="image width and height, pixels")
    parser.add_argument(
        "--test-fraction", type=float, default=defaults.test_fraction, help="share of each class's subjects in test/"
    )
    parser.add_argument("--contact-sheet", type=Path, help="also write a PNG grid of samples per class here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Generate the dataset (and optionally a contact sheet) and log a one-line summary.

    :param argv: arguments without the program name; None reads ``sys.argv``.
    """
    args = _parse_args(argv)
    config = PhantomConfig(
        per_class=args.per_class,
        slices_per_subject=args.slices_per_subject,
        test_fraction=args.test_fraction,
        seed=args.seed,
        size=args.size,
        image_format=args.format,
        difficulty=args.difficulty,
    )
    started = time.perf_counter()
    out_dir = generate_dataset(args.out, config)
    if args.contact_sheet is not None:
        write_contact_sheet(args.contact_sheet, config)
    logger.info(
        "Wrote %s phantom images (%s per class: %s train + %s test; %s subjects per class, %s in test; "
        "labels %s; seed %s; difficulty %s) to %s with labels.csv and manifest.csv in %.1f s",
        config.per_class * len(config.labels),
        config.per_class,
        config.train_count,
        config.per_class - config.train_count,
        config.subjects_per_class,
        config.test_subjects,
        ",".join(config.labels),
        config.seed,
        config.difficulty,
        out_dir,
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
