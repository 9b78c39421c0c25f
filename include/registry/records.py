"""Raw files -> rows of the registry: validate, fingerprint, label, write in one transaction per batch.

Nothing here builds SQL from a file name or a label: rows go to the backend's bulk path as data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import posixpath
import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

from PIL import UnidentifiedImageError

from include.config import ConfigError, Settings
from include.db import RegistryDatabase
from include.ingestion.mover import UPLOAD_SUFFIX, printable, safe_name
from include.ml.predict import ImageTooLarge, open_header
from include.registry.pixels import perceptual_hash, pixel_hash
from include.storage import Storage
from include.storage.base import TooLargeError

log = logging.getLogger(__name__)

# Where a preprocess run keeps its candidate list and its batches (see plan_prefix).
PLAN_AREA = "registry_plan"
# Uris per `IN (...)` query when asking which candidates are registered: far below every
# driver's limit on bound values (Postgres 65535, DuckDB none).
QUERY_CHUNK = 1000

# `glioma (12).jpg`, and a re-upload kept beside it: `glioma (12) (upload 3f9a1c2b0e4d).jpg`.
LABEL_IN_NAME = re.compile(r"^(?P<label>[^()]+?) \(\d+\)", flags=re.IGNORECASE)
# A folder of the upload path naming the file's subject, `landing/train/subject=p017/slice 3.jpg`:
# the Hive partition form, so other folders (`site_a/`) keep meaning nothing.
SUBJECT_FOLDER = "subject="
# A subject id is an id, not a text: longer ones are refused, so none fills messages and XComs.
MAX_SUBJECT_CHARACTERS = 128


class ImageRecord(NamedTuple):
    """One file's row in `images` (field order = column order). A tuple, so it goes to the bulk
    path as is."""

    content_hash: str
    uri: str
    split: str
    label: str | None
    width: int | None
    height: int | None
    mode: str | None
    bytes: int
    status: str
    reason: str | None
    first_seen_run_id: str
    # Of the decoded pixels (include.registry.pixels); None where nothing decoded.
    pixel_hash: str | None = None
    perceptual_hash: str | None = None
    # The patient or study the file was taken from (migration 0010); None where none is given.
    subject: str | None = None


IMAGE_COLUMNS = ImageRecord._fields
FILE_COLUMNS = ("uri", "content_hash", "split", "run_id")
# What write_records stores per file: the label each file carries (migration 0004), so two files
# with the same bytes and different labels show up in the `label_conflicts` view; and its subject.
FILE_ROW_COLUMNS = (*FILE_COLUMNS, "label", "subject")


class CsvEntry(NamedTuple):
    """What a row of the labels CSV says of one file."""

    label: str
    subject: str | None  # None: no `subject` column, or its cell is empty


@dataclass(frozen=True)
class Limits:
    """What registration refuses: MRI_MIN_IMAGE_SIDE, MRI_MAX_IMAGE_PIXELS, MRI_MAX_UPLOAD_BYTES."""

    min_side: int
    max_pixels: int
    # Checked against the stored size before a byte is read; the setting's default unless given.
    max_bytes: int = Settings.max_upload_bytes


class Quarantine(Exception):
    """The file cannot be registered; the message is the reason stored with it."""


def label_of(name: str, labels: tuple[str, ...], entry: CsvEntry | None) -> str:
    """The class of a file: the labels CSV when it names the file (``entry``), else the file-name rule."""
    label = entry.label if entry else None
    if label is None:
        match = LABEL_IN_NAME.match(name)
        if not match:
            raise Quarantine("no label: name does not follow '<label> (<n>).<ext>' and is not in the labels CSV")
        label = match["label"].strip().lower()
    if label not in labels:
        raise Quarantine(f"unknown label {label!r}; MRI_LABELS is {','.join(labels)}")
    return label


class Inspected(NamedTuple):
    """What registration measures of a decoded image."""

    width: int
    height: int
    mode: str
    pixel_hash: str
    perceptual_hash: str


def inspect_image(data: bytes, limits: Limits) -> Inspected:
    """Size, mode and pixel hashes of a fully decodable image; anything else raises Quarantine."""
    if not data:
        raise Quarantine("empty file (0 bytes)")
    try:
        image = open_header(data, limits.max_pixels)
        image.load()  # decodes every pixel: truncated files fail here, not in training
    except ImageTooLarge as err:
        raise Quarantine(f"decompression bomb: {err}") from None
    except UnidentifiedImageError:  # its message carries a memory address; this one is stable
        raise Quarantine("cannot decode: not an image format PIL knows") from None
    except Exception as err:  # PIL raises many types for corrupt data
        raise Quarantine(f"cannot decode: {err}") from None
    width, height = image.size
    if min(width, height) < limits.min_side:
        raise Quarantine(f"too small: {width}x{height}, MRI_MIN_IMAGE_SIDE is {limits.min_side}")
    return Inspected(width, height, image.mode, pixel_hash(image), perceptual_hash(image))


def registry_uri(uri: str) -> str:
    """``uri`` as the registry stores it: a name that is not UTF-8 (a Linux file name may be any
    bytes; Python carries them as surrogates) gets ``\\xff`` escapes, which every driver can write."""
    return printable(uri)


def csv_names(key: str, split: str) -> tuple[str, ...]:
    """The labels CSV names a file by its path as uploaded below landing/<split>/ (optionally
    prefixed by the split): ``raw/train/a/scan (upload 3f9a1c2b0e4d).jpg`` -> ``train/a/scan.jpg``,
    ``a/scan.jpg``. So re-uploads keep their row and two folders' ``scan.jpg`` keep theirs."""
    area = f"raw/{split}/"
    relative = UPLOAD_SUFFIX.sub("", key[len(area) :] if key.startswith(area) else posixpath.basename(key))
    return f"{split}/{relative}", relative


def subject_of(relative: str, entry: CsvEntry | None) -> str | None:
    """The subject of a file: the labels CSV's when its row gives one, else the nearest
    ``subject=<id>`` folder of its path below landing/<split>/ (``relative``), else None; in Unicode
    NFC, so a folder name from macOS (NFD) and a CSV cell name the same subject.

    :raises Quarantine: a subject of more than MAX_SUBJECT_CHARACTERS or with a control character
        (a newline would make two snapshots' member lists hash alike; PostgreSQL refuses NUL).
    """
    subject = entry.subject if entry and entry.subject else None
    for folder in reversed(posixpath.dirname(relative).split("/") if subject is None else []):
        if folder.startswith(SUBJECT_FOLDER):
            subject = folder.removeprefix(SUBJECT_FOLDER).strip() or None
            break
    if subject is None:
        return None
    subject = unicodedata.normalize("NFC", subject)
    if len(subject) > MAX_SUBJECT_CHARACTERS or any(unicodedata.category(c) == "Cc" for c in subject):
        raise Quarantine(
            f"subject {printable(subject[:MAX_SUBJECT_CHARACTERS])!r} is not a subject id: at most "
            f"{MAX_SUBJECT_CHARACTERS} characters and no control characters; fix it in the labels CSV or the "
            "subject= folder and upload the file again"
        )
    return subject


def fingerprint(
    storage: Storage,
    uri: str,
    split: str,
    run_id: str,
    labels: tuple[str, ...],
    overrides: dict[str, CsvEntry],
    limits: Limits,
) -> ImageRecord:
    """Read one file and return its row: registered, or quarantined with the reason (and the label
    and subject it carries, where known)."""
    stored_uri = registry_uri(uri)
    try:
        data = storage.read(storage.key(uri), max_bytes=limits.max_bytes)
    except TooLargeError as err:
        return unread(stored_uri, split, run_id, str(err), err.size)
    except OSError as err:  # a directory, a symlink (refused, never followed), no permission
        reason = (
            "a directory, not a file" if isinstance(err, IsADirectoryError) else f"unreadable: {err.strerror or err}"
        )
        return unread(stored_uri, split, run_id, reason, 0)
    content_hash = hashlib.sha256(data).hexdigest()
    label = subject = None
    try:
        if stored_uri != uri:
            raise Quarantine(
                "file name is not valid UTF-8 (stored with \\x escapes); rename it in UTF-8 and upload it again"
            )
        names = csv_names(storage.key(uri), split)
        entry = next((overrides[name] for name in names if name in overrides), None)
        subject = subject_of(names[1], entry)
        label = label_of(posixpath.basename(uri), labels, entry)
        seen = inspect_image(data, limits)
    except Quarantine as why:
        return ImageRecord(
            content_hash,
            stored_uri,
            split,
            label,
            None,
            None,
            None,
            len(data),
            "quarantined",
            str(why),
            run_id,
            subject=subject,
        )
    return ImageRecord(
        content_hash,
        uri,
        split,
        label,
        seen.width,
        seen.height,
        seen.mode,
        len(data),
        "registered",
        None,
        run_id,
        seen.pixel_hash,
        seen.perceptual_hash,
        subject,
    )


def unread(uri: str, split: str, run_id: str, reason: str, size: int) -> ImageRecord:
    """The quarantined row of a file whose bytes were not read: with no bytes to key it by, its uri
    keys it, so two such files never share a row."""
    key = hashlib.sha256(f"unreadable:{uri}".encode()).hexdigest()
    return ImageRecord(key, uri, split, None, None, None, None, size, "quarantined", reason, run_id)


def read_label_overrides(storage: Storage, key: str | None) -> dict[str, CsvEntry]:
    """``file,label[,subject]`` rows of the labels CSV, lower-cased labels, subjects as written
    (stripped; an empty cell is no subject). ``file`` is the path as uploaded below
    landing/<split>/ (``scan_001.jpg``, ``site_a/scan_001.jpg``), optionally prefixed by the split
    (``test/scan_001.jpg``) where both splits hold that path."""
    if key is None:
        return {}
    if not storage.exists(key):
        raise ConfigError(
            f"MRI_LABELS_CSV {key!r} is not in the storage (looked for {storage.uri(key)}). Upload the CSV "
            "there (columns file,label and optionally subject) or unset MRI_LABELS_CSV to label by file name only."
        )
    rows = csv.DictReader(io.StringIO(storage.read(key).decode("utf-8-sig")))
    if not rows.fieldnames or not {"file", "label"} <= set(rows.fieldnames):
        raise ValueError(
            f"MRI_LABELS_CSV {key!r} needs the columns file,label (and optionally subject); found {rows.fieldnames}"
        )
    return {
        csv_path(row["file"]): CsvEntry(row["label"].strip().lower(), (row.get("subject") or "").strip() or None)
        for row in rows
    }


def csv_path(name: str) -> str:
    """A CSV ``file`` cell as a landing-relative path: ``./a/x.jpg``, ``landing/a/x.jpg`` -> ``a/x.jpg``."""
    path = posixpath.normpath(name.strip().replace("\\", "/")).lstrip("/")
    return path.removeprefix("landing/")


def unregistered(db: RegistryDatabase, uris: list[str]) -> list[str]:
    """The ``uris`` with no row in `image_files` yet, in their order. Asked by the candidates'
    keys, QUERY_CHUNK at a time in one transaction: the query grows with the files a run looks
    at, never with the registry (the old way loaded every registered uri)."""
    known: set[str] = set()
    with db.transaction() as cursor:
        for first in range(0, len(uris), QUERY_CHUNK):
            chunk = [registry_uri(uri) for uri in uris[first : first + QUERY_CHUNK]]
            marks = ", ".join([db.placeholder] * len(chunk))
            cursor.execute(f"SELECT uri FROM image_files WHERE uri IN ({marks})", chunk)
            known.update(uri for (uri,) in cursor.fetchall())
    return [uri for uri in uris if registry_uri(uri) not in known]


def read_manifests(storage: Storage, keys: list[str]) -> tuple[list[str], bool]:
    """The raw/ keys the mover's pending manifests name, and whether any asks for a full listing
    (see :func:`include.ingestion.mover.write_pending_manifest`)."""
    found, rescan = [], False
    for key in keys:
        manifest = json.loads(storage.read(key))
        found.extend(manifest["keys"])
        rescan = rescan or manifest["rescan"]
    return found, rescan


def plan_prefix(split: str, run_id: str) -> str:
    """Where one preprocess run keeps its file lists: passed between tasks by key, not by XCom."""
    return f"{PLAN_AREA}/{split}/{safe_name(run_id)}"


def write_records(db: RegistryDatabase, records: list[ImageRecord], run_id: str) -> None:
    """One transaction: new contents into `images`, every file into `image_files`. A batch is
    all in or all out; re-running it, or running an overlapping batch concurrently, adds nothing."""
    with db.transaction() as cursor:
        db.insert_new_rows(cursor, "images", IMAGE_COLUMNS, "content_hash", records)
        db.insert_new_rows(
            cursor,
            "image_files",
            FILE_ROW_COLUMNS,
            "uri",
            [(r.uri, r.content_hash, r.split, run_id, r.label, r.subject) for r in records],
        )
