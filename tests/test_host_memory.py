"""training.host_memory gives freed heap memory back to the OS (glibc's malloc_trim)."""
import os

from training.host_memory import release_freed_memory


def _resident_bytes() -> int:
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def test_release_returns_freed_heap_memory():
  # 64 KiB blocks stay below glibc's mmap threshold: they live on the heap, where free() keeps them.
  blocks = [bytearray(64 << 10) for _ in range(3200)]  # 200 MiB, every page touched.
  blocks = blocks[1::2]  # Free every other block: holes that free() alone cannot return.
  held = _resident_bytes()
  release_freed_memory()
  assert held - _resident_bytes() > 50 << 20
  del blocks
