"""Process memory readings shared by the benchmark scripts."""

from __future__ import annotations

import resource
import sys


def rss_mib() -> float:
    """Current resident set size of this process (MiB), from /proc (Linux) or psutil."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import psutil  # noqa: PLC0415 - fallback only
    except ImportError:
        return float("nan")
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (MiB); process-wide and never decreasing."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux
