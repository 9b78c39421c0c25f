"""``python -m include.quality report``: validate both splits now and print the Data Docs index page.

Uses the backend of MRI_DB_CONN_ID, records nothing in the registry and gates nothing (``make
dq-report``). The exit status is 0 when both splits pass and 1 when an expectation failed.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pendulum

from include.db import get_database
from include.quality import run_report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m include.quality", description=__doc__)
    parser.add_argument("command", choices=["report"])
    parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    outcomes = run_report(get_database(), run_id=f"dq_report__{pendulum.now('UTC').format('YYYYMMDDTHHmmss')}")
    logging.info("Data Docs: %s", next(iter(outcomes.values())).index)
    return 0 if all(o.success for o in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
