"""The SQL files of ``sql/``, loaded by name and bound for a backend.

A file holds one statement. Values are ``{{ name }}`` markers, the Astro SDK's syntax, so a file the
SDK runs on Airflow 2 (``include/wiring/sql.py``) is the same file ``include.db`` runs: :func:`bound`
replaces each marker by the backend's placeholder and passes the values apart, never pasted in.
"""

from __future__ import annotations

import re
from typing import Any

from include.config import SQL_DIR

# `{{ name }}` in a SQL file: a value bound under that name.
PARAMETER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def sql_file(name: str) -> str:
    """The text of ``sql/<name>``, e.g. ``sql_file("pick_best_model.sql")``."""
    return (SQL_DIR / name).read_text()


def bound(sql: str, parameters: dict[str, Any], placeholder: str) -> tuple[str, list[Any]]:
    """``sql`` with each ``{{ name }}`` replaced by ``placeholder``, and the values in that order.

    :raises KeyError: naming a ``{{ name }}`` that ``parameters`` lacks.
    """
    names = PARAMETER.findall(sql)
    missing = sorted(set(names) - set(parameters))
    if missing:
        raise KeyError(f"the SQL needs parameters {missing}; got {sorted(parameters)}")
    return PARAMETER.sub(placeholder, sql), [parameters[name] for name in names]
