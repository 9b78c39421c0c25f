"""Whether a process is really over."""

import time

import psutil


def stopped(process: psutil.Process, timeout: float = 10) -> bool:
    """Gone (or a zombie left for whoever adopted it to reap) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
