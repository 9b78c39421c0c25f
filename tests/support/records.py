"""Synthetic registry rows, for the write-path tests and the benchmark (no image files needed)."""

from __future__ import annotations

from include.registry import ImageRecord


def synthetic_records(start: int, stop: int, run_id: str = "run-1", split: str = "train") -> list[ImageRecord]:
    """Rows ``start``..``stop - 1``: distinct content hashes and uris, registered."""
    return [
        ImageRecord(
            content_hash=f"{i:064x}",
            uri=f"s3://bucket/raw/{split}/glioma ({i}).jpg",
            split=split,
            label="glioma",
            width=256,
            height=256,
            mode="L",
            bytes=20_000 + i,
            status="registered",
            reason=None,
            first_seen_run_id=run_id,
        )
        for i in range(start, stop)
    ]
