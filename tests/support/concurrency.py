"""Evidence of real concurrency, from when things started and ended."""


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans that were open at the same moment."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak
