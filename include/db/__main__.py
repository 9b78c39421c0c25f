"""``python -m include.db migrate``: apply the migrations and create or resize the pools, outside any DAG."""

from __future__ import annotations

import argparse
import logging
import sys

from include.db import get_database
from include.db.migrations import apply_migrations
from include.wiring.setup import create_pools


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m include.db", description=__doc__)
    parser.add_argument("command", choices=["migrate"])
    parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    db = get_database()
    applied = apply_migrations(db)
    logging.info("%r: applied %s", db, applied or "nothing, schema is current")
    create_pools(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
