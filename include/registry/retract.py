"""Take back a misplaced upload: its ``image_files`` row is marked retracted (who, why, when), never
deleted; its bytes move to ``quarantine/``; the quality gates run again.

Two doors, one path: the ``retract_upload`` DAG (params ``uri``, ``reason``, ``retracted_by``, for
the UI) and ``make retract URI=... REASON=... [BY=...]``, which runs that DAG with ``airflow dags
test`` (``python -m include.registry.retract``; make passes the values in the environment, never as
shell words). The DAG's task emits ``images/<split>`` of both splits: a leak or a label conflict fails
the gates of both, and either may be the one that must pass again.

A retracted file leaves every snapshot, leak and label conflict from then on (view ``live_files``,
migration 0008). The steps run in this order, so a crash anywhere loses nothing and the next
retraction of the same uri finishes the work:

1. copy the file to ``quarantine/<split>/<path>`` (create-if-absent; a fingerprinted name if other
   bytes hold that name, as ingestion does);
2. mark the row, in one transaction; a row already retracted keeps its first who, why and when;
3. replace the file in ``raw/`` by a note saying why it was retracted and where it went. Names in
   ``raw/`` are never reused: a later upload of the same name gets a name of its own and is
   registered, where a freed name would make it look registered already and be skipped.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from include.db import RegistryDatabase
from include.ingestion.mover import place
from include.storage import Storage

log = logging.getLogger(__name__)

RETRACT_DAG_ID = "retract_upload"
USAGE = "make retract URI='<the file's uri, as the gate's message names it>' REASON='<why>' [BY=<who>]"


class RetractionRefused(ValueError):
    """The retraction cannot be made as asked; the message says what to give instead."""


@dataclass(frozen=True)
class Retraction:
    """A retracted upload, as recorded.

    :param quarantined_as: where its bytes are now; None if the file was gone from raw/ already.
    :param already: it had been retracted before this call (who, why and when are the first ones).
    """

    uri: str
    split: str
    retracted_by: str
    reason: str
    retracted_at: str
    quarantined_as: str | None
    already: bool


def retract_upload(db: RegistryDatabase, storage: Storage, uri: str, retracted_by: str, reason: str) -> Retraction:
    """Retract the registered file ``uri`` (see the module docstring for the steps).

    :param uri: the file's ``image_files.uri``, as the gate's failure message names it.
    :param retracted_by: who takes it back.
    :param reason: why; kept in the row and in the note left in raw/.
    :raises RetractionRefused: a value is missing, or ``uri`` is no file the registry holds.
    """
    uri, retracted_by, reason = uri.strip(), retracted_by.strip(), reason.strip()
    if not (uri and retracted_by and reason):
        raise RetractionRefused(
            f"A retraction needs the file's uri, who retracts it and why; got uri={uri!r}, "
            f"retracted_by={retracted_by!r}, reason={reason!r}. Usage: {USAGE}"
        )
    with db.transaction() as cursor:
        row = _file_row(cursor, db.placeholder, uri)
    if row is None:
        raise RetractionRefused(
            f"{uri!r} is no file the registry holds (image_files.uri in {db!r}). Copy the uri from the gate's "
            "failure message: it names the uploads of each leak, label conflict and near-duplicate."
        )
    already = row["retracted_at"] is not None
    try:
        key = storage.key(uri)
    except ValueError as outside:  # registered under another MRI_STORAGE_ROOT
        raise RetractionRefused(str(outside)) from None
    if not already:
        moved = _quarantine(storage, key, row["split"]) if storage.exists(key) else None
        if moved is None:
            log.warning("%s is not in the storage any more; marking its row retracted all the same", uri)
        row = _mark_retracted(db, uri, retracted_by, reason, storage.uri(moved) if moved else None)
    retraction = Retraction(
        uri,
        row["split"],
        row["retracted_by"],
        row["retraction_reason"],
        str(row["retracted_at"]),
        row["quarantined_as"],
        already,
    )
    if retraction.quarantined_as:
        _leave_note(storage, key, storage.key(retraction.quarantined_as), retraction)
    log.info("%s %s: %s", "Already retracted" if already else "Retracted", uri, retraction)
    return retraction


def _file_row(cursor: Any, p: str, uri: str) -> dict[str, Any] | None:
    """The split and retraction columns of ``uri``'s row, or None."""
    cursor.execute(
        f"SELECT split, retracted_at, retracted_by, retraction_reason, quarantined_as FROM image_files WHERE uri = {p}",
        (uri,),
    )
    names = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    return dict(zip(names, rows[0], strict=True)) if rows else None


def _quarantine(storage: Storage, key: str, split: str) -> str:
    """Copy ``key`` to its place below ``quarantine/<split>/``; return the key it is at."""
    relative = key.removeprefix(f"raw/{split}/")
    destination, _ = place(storage, key, f"quarantine/{split}/{relative}")
    return destination


def _mark_retracted(db: RegistryDatabase, uri: str, by: str, reason: str, moved: str | None) -> dict[str, Any]:
    """Mark the row retracted unless it is already (the first retraction's values stay); return it."""
    p = db.placeholder
    with db.transaction() as cursor:
        cursor.execute(*db.statement("retract_file.sql", retracted_by=by, reason=reason, quarantined_as=moved, uri=uri))
        return _file_row(cursor, p, uri)


def _leave_note(storage: Storage, key: str, moved: str, retraction: Retraction) -> None:
    """Replace the retracted bytes at ``key`` by a note, once their copy at ``moved`` is whole."""
    if not storage.exists(key):
        return
    data = storage.read(key)
    if data != storage.read(moved):
        return  # the note is there already (or a person put something else there: it stays)
    note = (
        f"Retracted {retraction.retracted_at} by {retraction.retracted_by}: {retraction.reason}\n"
        f"The file is now {retraction.quarantined_as}. This note keeps its name taken, so a new upload of "
        "the same name is registered under a name of its own.\n"
    )
    storage.write(key, note.encode())


def main() -> int:
    """``make retract``: run the ``retract_upload`` DAG now on the values make passes (URI, REASON, BY)."""
    uri, reason = os.environ.get("URI", ""), os.environ.get("REASON", "")
    if not uri.strip() or not reason.strip():
        print(f"Say which file and why: {USAGE}", file=sys.stderr)
        return 2
    conf = {"uri": uri, "reason": reason, "retracted_by": os.environ.get("BY") or getpass.getuser()}
    # An argument list: the values reach Airflow as JSON, never through a shell.
    command = [sys.executable, "-m", "airflow", "dags", "test", RETRACT_DAG_ID, "--conf", json.dumps(conf)]
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
