"""Landing -> raw: move exactly the listed files, quarantine what is not an image, lose nothing.

A file is first claimed (locally renamed to a private name; on S3 pinned to its ETag), then copied
to its destination, and only then deleted, as that claim: an upload renamed into place meanwhile
is a new file and stays. A crash or an unreachable store leaves it in landing for the next run. A
destination name is never overwritten: same bytes count as a duplicate upload, other bytes get a
name with their content fingerprint, so both uploads survive.

Every file gets an outcome, one file at a time: an error is that file's outcome (``failed``, it
stays in landing and the batch goes on); after MRI_INGEST_ATTEMPTS runs it goes to quarantine, or
is parked beside its folder if even that fails. A replayed batch (Airflow's retry of a mapped
task) finds the files an earlier try moved ``gone`` and skips them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import posixpath
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from include.config import settings
from include.names import safe_name
from include.storage import Storage, StorageUnavailableError
from include.storage.base import REGULAR, TooLargeError

log = logging.getLogger(__name__)

# Leading bytes of the image formats the pipeline reads.
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
SIGNATURE_BYTES = max(len(s) for s in IMAGE_SIGNATURES)
# Longest file name (one path component) local filesystems take: ext4, xfs, APFS, NTFS.
MAX_NAME_BYTES = 255
# ` (upload 3f9a1c2b0e4d)` before the extension: the registry strips it to find the CSV row.
UPLOAD_SUFFIX = re.compile(r" \(upload [0-9a-f]{12}\)(?=\.[^./]*$|$)")


@dataclass(frozen=True)
class Outcome:
    source: str
    destination: str
    outcome: str  # moved | duplicate | quarantined | failed | gone
    reason: str | None = None

    @property
    def in_raw(self) -> bool:
        """The file (or, for ``gone``, maybe an earlier try's copy) is in raw/ and may need registering."""
        copied = self.outcome in ("moved", "duplicate") and self.destination.startswith("raw/")
        return copied or self.outcome == "gone"


def printable(text: str, limit: int | None = None) -> str:
    """``text`` as any UTF-8 sink (a database, a log) takes it: a Linux file name may be any bytes,
    which Python carries as surrogates; those become ``\\xff`` escapes. Cut to ``limit`` characters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate that did not come from a file name
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def name_batch(keys: list[str]) -> None:
    """Name the running mapped task in the UI after its batch's first key (its template reads
    ``batch_name``): printable, since a name that is not UTF-8 cannot be stored, and short, since
    rendered_map_index is VARCHAR(250) in the metadata DB. Airflow is imported here only: the rest
    of this module runs without it."""
    from include.wiring.compat import get_current_context

    get_current_context()["batch_name"] = printable(keys[0], 120) if keys else ""


def landing_prefix(split: str) -> str:
    return f"landing/{split}"


# Mapped tasks per run at most (and never above Airflow's core.max_map_length): a run with more
# files gets bigger batches, never a planning task that fails on max_map_length, and the list of
# batch references a run passes through XCom stays a few kB.
MAX_MAPPED_BATCHES = 128
# Per-file reasons a task returns through XCom at most (the counts are always whole): every
# reason is also in storage (the outcome logs) or the registry (`images.reason`), and XCom must
# stay small whatever the batch size.
MAX_REASONS_IN_XCOM = 20
# Where the mover lists, per batch, the files it put in raw/ (see write_pending_manifest); the
# preprocess DAG registers exactly those and deletes the manifest once they are registered.
PENDING_AREA = "pending_registration"


def batches(keys: list[str], size: int) -> list[list[str]]:
    """Consecutive chunks of ``size`` keys: one mapped task each."""
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def first_reasons(pairs: Iterable[tuple[str, str | None]]) -> dict[str, str | None]:
    """The first MAX_REASONS_IN_XCOM (file, reason) pairs, for a task's XCom; names made printable
    (a name that is not UTF-8 cannot travel as JSON; the exact one is in the outcome log)."""
    return {printable(key): reason for key, reason in itertools.islice(pairs, MAX_REASONS_IN_XCOM)}


def capped_batch_size(files: int, size: int, max_batches: int) -> int:
    """``size``, grown just enough that ``files`` fit in ``max_batches`` batches.

    :param files: how many files the run will split into batches.
    :param size: the wanted batch size (a setting, or the backend's).
    :param max_batches: the most mapped tasks the run may create.
    """
    if size < 1 or max_batches < 1:
        raise ValueError(f"batch size {size} and max batches {max_batches} must be positive")
    return max(size, -(-files // max_batches))


def max_mapped_batches() -> int:
    """MAX_MAPPED_BATCHES, or Airflow's core.max_map_length if that is lower."""
    from airflow.configuration import conf

    return min(MAX_MAPPED_BATCHES, conf.getint("core", "max_map_length"))


def quarantine_reason(storage: Storage, key: str, kind: str = REGULAR) -> str | None:
    """Why ``key`` is not an image the pipeline can take, or None. Only the first bytes are read,
    and none of a file over MRI_MAX_UPLOAD_BYTES; decoding and fingerprinting happen at registration.

    :param kind: what the entry is (from the claim): anything but a regular file is never opened.
    """
    if kind != REGULAR:
        return f"not a regular file: {kind}"
    try:
        head = storage.read(key, SIGNATURE_BYTES, max_bytes=settings().max_upload_bytes)
    except TooLargeError as err:
        return str(err)
    except OSError as err:  # e.g. a symlink, refused on purpose
        return f"unreadable: {err.strerror or err}"
    if not head:
        return "empty file (0 bytes)"
    if not any(head.startswith(signature) for signature in IMAGE_SIGNATURES):
        return f"not an image: starts with {head[:8]!r}, expected {' or '.join(IMAGE_SIGNATURES.values())}"
    return None


def fingerprinted(key: str, sha256: str) -> str:
    """``raw/train/glioma (1).jpg`` -> ``raw/train/glioma (1) (upload 3f9a1c2b0e4d).jpg``.

    The stem is shortened if the name would pass MAX_NAME_BYTES: a long name must not turn a
    re-upload into a file that can never be placed.

    :param sha256: the hex SHA-256 of the file's bytes; its start goes into the name.
    """
    folder, name = posixpath.split(key)
    stem, suffix = posixpath.splitext(name)
    tag = f" (upload {sha256[:12]}){suffix}"
    room = MAX_NAME_BYTES - len(tag.encode("utf-8", "surrogateescape"))
    while len(stem.encode("utf-8", "surrogateescape")) > room:  # whole characters only
        stem = stem[:-1]
    return posixpath.join(folder, f"{stem}{tag}")


def place(storage: Storage, source: str, destination: str, source_tag: str | None = None) -> tuple[str, bool]:
    """Copy ``source`` to ``destination`` or, if taken by other bytes, to a fingerprinted name.

    :param source_tag: the claimed version of ``source``; another version is not copied.
    :return: the key it now lives at, and whether those bytes were already there (a duplicate).
    """
    if storage.copy_new(source, destination, source_tag):
        return destination, False
    # Compared by hashes read a chunk at a time: a file of any size (one quarantined as too large
    # too) is never held in memory.
    sha256 = storage.sha256(source)
    if storage.sha256(destination) == sha256:
        return destination, True
    alternative = fingerprinted(destination, sha256)
    if storage.copy_new(source, alternative, source_tag):
        return alternative, False
    if storage.sha256(alternative) == sha256:
        return alternative, True
    raise RuntimeError(f"{alternative} exists with other bytes than {source}; left in landing")


def ingest_file(storage: Storage, key: str, split: str, reason: str | None = None) -> Outcome:
    """Move one landing file to raw/ or quarantine/, keeping its path below landing/<split>/.

    :param reason: quarantine it for this reason, whatever its bytes (a file out of attempts).
    """
    relative = key[len(landing_prefix(split)) + 1 :]
    claim = storage.claim(key)
    if claim is None:
        return Outcome(key, "", "gone", "not in landing: moved by an earlier try of this batch, or removed")
    try:
        reason = reason or quarantine_reason(storage, claim.key, claim.kind)
        area = "quarantine" if reason else "raw"
        destination, duplicate = place(storage, claim.key, f"{area}/{split}/{relative}", claim.tag)
    except BaseException:
        storage.unclaim(claim, key)
        raise
    if not storage.release(claim):
        log.info("%s was uploaded again while it was being moved; the new upload stays for the next run", key)
    outcome = "quarantined" if reason else ("duplicate" if duplicate else "moved")
    return Outcome(key, destination, outcome, reason)


def attempts_key(split: str, key: str) -> str:
    """Where the failed attempts of one landing file are counted (a hash: any name fits)."""
    return f"ingest_attempts/{split}/{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}.json"


def failed_attempts(storage: Storage, split: str) -> dict[str, int]:
    """Landing key -> runs it has failed in so far; one listing per batch, empty when all is well."""
    counts = {}
    for obj in storage.list(f"ingest_attempts/{split}"):
        record = json.loads(storage.read(obj.key))
        counts[record["key"]] = record["attempts"]
    return counts


def describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def after_failure(storage: Storage, key: str, split: str, attempt: int, max_attempts: int, err: Exception) -> Outcome:
    """The outcome of a file whose move raised: counted and left in landing, or, out of
    attempts, quarantined; a file that cannot even be quarantined is parked where it is."""
    if attempt < max_attempts:
        record = {"key": key, "attempts": attempt, "error": describe(err)}
        storage.write(attempts_key(split, key), json.dumps(record).encode())
        why = f"attempt {attempt} of {max_attempts} (MRI_INGEST_ATTEMPTS) failed: {describe(err)}; left in landing"
        return Outcome(key, "", "failed", why)
    reason = f"failed {attempt} times (MRI_INGEST_ATTEMPTS): {describe(err)}"
    try:
        outcome = ingest_file(storage, key, split, reason=reason)
    except StorageUnavailableError:
        raise
    except Exception as quarantine_err:
        marker = storage.park(key, f"{reason}\nquarantine failed too: {describe(quarantine_err)}\n")
        outcome = Outcome(
            key,
            "",
            "failed",
            f"{reason}; quarantine failed too ({describe(quarantine_err)}): parked in landing, "
            f"not listed until {marker} is deleted",
        )
    storage.delete(attempts_key(split, key))
    return outcome


def set_aside_impostors(storage: Storage, keys: list[str], split: str) -> list[Outcome]:
    """Quarantine what an uploader put where the mover keeps its private folders (a link named
    ``.moving`` could carry claims out of the storage root): moved as the entry it is, never
    followed, so the files beside it are claimed in a real folder."""
    outcomes = []
    for folder in sorted({key.rpartition("/")[0] for key in keys}):
        for impostor, kind in storage.impostors(folder):
            area = impostor.rpartition("/")[2]
            reason = f"not a regular file: {kind}, where the mover keeps its private folder {area}"
            destination = f"quarantine/{split}/{impostor[len(landing_prefix(split)) + 1 :]}"
            try:
                if not storage.copy_new(impostor, destination):
                    destination = fingerprinted(destination, hashlib.sha256(impostor.encode()).hexdigest())
                    storage.copy_new(impostor, destination)
                storage.delete(impostor)
            except FileNotFoundError:  # another batch of this run set it aside first
                continue
            log.warning("%s: %s; quarantined as %s", impostor, reason, destination)
            outcomes.append(Outcome(impostor, destination, "quarantined", reason))
    return outcomes


def move_files(storage: Storage, keys: list[str], split: str, max_attempts: int) -> list[Outcome]:
    """Every key's outcome: one file's error never stops the others. Only an unreachable store
    stops the batch (every file would fail alike; Airflow's retry resumes, skipping moved files)."""
    attempts = failed_attempts(storage, split)
    outcomes = set_aside_impostors(storage, keys, split)
    for key in keys:
        try:
            outcome = ingest_file(storage, key, split)
        except StorageUnavailableError:
            raise
        except Exception as err:
            log.warning("Moving %s failed: %s", key, describe(err))
            outcome = after_failure(storage, key, split, attempts.get(key, 0) + 1, max_attempts, err)
        else:
            if key in attempts:
                storage.delete(attempts_key(split, key))
        outcomes.append(outcome)
    return outcomes


def pending_prefix(split: str) -> str:
    return f"{PENDING_AREA}/{split}"


def write_pending_manifest(
    storage: Storage, split: str, run_id: str, batch: int, outcomes: list[Outcome] | None
) -> str | None:
    """Tell the registry which files this batch put in raw/: their keys, and ``rescan`` when a
    file was ``gone`` (an earlier try moved it, to a destination no outcome recorded), so the
    registry lists raw/ once instead. The registry reads only these manifests, so a run costs what
    it moved, not what raw/ holds.

    Called twice: with ``outcomes=None`` when the batch starts (a rescan request, so a batch that
    dies for good after copying some files still leaves word of them), then with the outcomes,
    which replace it with the exact keys, or remove it when nothing reached raw/ (returns None).
    """
    key = f"{pending_prefix(split)}/{safe_name(run_id)}/batch-{batch:05d}.json"
    if outcomes is None:
        keys, rescan = [], True
    else:
        keys = [o.destination for o in outcomes if o.in_raw and o.destination]
        rescan = any(o.outcome == "gone" for o in outcomes)
    if not keys and not rescan:
        storage.delete(key)
        return None
    storage.write(key, json.dumps({"run_id": run_id, "keys": keys, "rescan": rescan}).encode())
    return key


def batch_keys_key(split: str, run_id: str, batch: int) -> str:
    """Where a run keeps one batch of the landing keys it owns (a record, like the outcome logs)."""
    return f"ingest_batches/{split}/{safe_name(run_id)}/batch-{batch:05d}.json"


def write_outcome_log(storage: Storage, split: str, run_id: str, batch: int, outcomes: list[Outcome]) -> str:
    """Persist one batch's outcomes as JSON lines in storage, where they outlive Airflow's XCom."""
    key = f"ingest_log/{split}/{safe_name(run_id)}/batch-{batch:05d}.jsonl"
    storage.write(key, "".join(json.dumps(asdict(o)) + "\n" for o in outcomes).encode())
    return key
