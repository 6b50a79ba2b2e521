"""A process's high-water resident memory, as Linux reports it for the process itself."""

from __future__ import annotations

from pathlib import Path


def high_water_rss_kib() -> int:
    """This process's VmHWM. Not rusage's ru_maxrss: that also counts the memory a process shared
    with its parent between the fork and the exec that started it."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")
