"""The one partitioner: which partition of a topic a key lands on.

The Java client's default (murmur2 of the key), so a message lands where any other
producer would put it, and a reader can tell which partition holds an account's
messages without asking the broker.
"""

from __future__ import annotations

import functools

from aiokafka.partitioner import murmur2


@functools.lru_cache(maxsize=65536)
def partition_for(key: bytes | None, partitions: int) -> int:
    """The partition of `key` on a topic of `partitions` partitions (0 for no key)."""
    if key is None:
        return 0
    return int(murmur2(key) & 0x7FFFFFFF) % partitions
