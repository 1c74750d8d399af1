"""The projector's process gives freed large blocks back to the system (peak RSS)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Megabyte blocks, every other one freed: with glibc's moving threshold they come from
# the heap after the first free, and the freed ones between the kept ones stay resident.
PROGRAM = textwrap.dedent(
    """
    from status_projector.entrypoints.memory import map_large_blocks_apart

    def rss_mb():
        with open("/proc/self/status") as status:
            return int(status.read().split("VmRSS:")[1].split()[0]) / 1024

    assert map_large_blocks_apart()
    first = bytearray(4 << 20)
    del first
    blocks = [bytearray(1 << 20) for _ in range(80)]
    before = rss_mb()
    del blocks[::2]
    print(before - rss_mb())
    """
)


def test_freed_fetch_sized_blocks_leave_the_resident_set() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 32, f"{40 - float(out.stdout):.1f} MB of 40 freed MB still resident"
