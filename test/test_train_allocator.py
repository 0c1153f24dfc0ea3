"""The trainer's allocator setting: freed training memory stays in the process (glibc)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# In a fresh process (this one's heap already holds whatever earlier tests freed): how much of
# a freed, touched 64 MB tensor is still resident.
PROBE = """
import os, sys, torch
from rkn_ros.train.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = resident()
block = torch.empty(16 * 2**20).fill_(1.0)
del block
print((resident() - before) / 2**20)
"""


def _kept_mb(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not _glibc(), reason="the C library is not glibc: the setting does nothing")
def test_a_freed_large_tensor_stays_resident_for_the_next_batch() -> None:
    # The setting is tried in the probe processes only (it is permanent for a process), and
    # on glibc it must work: the probe asserts that it reports success.
    # By default glibc unmaps a block this large on free, and the next batch page-faults it in
    # again; with the setting it stays for the next batch.
    assert _kept_mb("default") < 16
    assert _kept_mb("keep") > 56
