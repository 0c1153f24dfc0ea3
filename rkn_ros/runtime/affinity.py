"""Pin every thread of this process to a set of CPUs (Linux), as real-time stacks do.

On the reference machine, pinning shortened the node's wake-up and delivery, not its model step
(BENCHMARKS.md, "End to end"); with an isolated core (``isolcpus``) nothing else runs there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable


def pin_process(cpus: Iterable[int]) -> list[int]:
    """Restrict all threads of this process, and the threads they start later, to ``cpus``.

    Threads that exist already (the DDS middleware's, a thread pool's) are pinned one by one;
    new threads inherit the affinity of the thread that starts them. Returns the sorted CPU
    list. Raises ValueError, naming the allowed CPUs, for an empty or unavailable set, and
    OSError where the platform has no affinity call.
    """
    wanted = sorted(set(cpus))
    if not wanted:
        raise ValueError("no CPUs given")
    if not hasattr(os, "sched_setaffinity"):
        raise OSError("CPU affinity is not supported on this platform (Linux only)")
    allowed = sorted(os.sched_getaffinity(0))
    outside = [cpu for cpu in wanted if cpu not in allowed]
    if outside:
        raise ValueError(f"CPUs {outside} are not available to this process (it may use {allowed})")
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]  # no /proc: the calling thread, and what it starts from now on
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # the thread ended since the listing
            os.sched_setaffinity(tid, wanted)
    return wanted
