"""Evidence of real concurrency, from when things started and ended; another process holding a file."""

import contextlib
import subprocess
import sys
from collections.abc import Iterator


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans that were open at the same moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


@contextlib.contextmanager
def holding_duckdb_file(path: str) -> Iterator[subprocess.Popen]:
    """Another process that has the DuckDB file ``path`` open (and so its lock) until the block ends."""
    hold = f"import duckdb, time; c = duckdb.connect({path!r}); print('ready', flush=True); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield holder
    finally:
        holder.kill()
        holder.wait()
