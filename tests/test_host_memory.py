"""training.host_memory: freed heap memory back to the OS (glibc's malloc_trim), and scripts
restarted with glibc's huge-page tunable."""
import os
import subprocess
import sys

import pytest

from training import host_memory
from training.host_memory import HUGE_PAGES_TUNABLE, huge_pages_environment, release_freed_memory

_SCRIPT = """
import os, sys
from training import host_memory
print('before', os.getpid(), flush=True)
host_memory.reexec_with_huge_pages()
print('after', os.getpid(), os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])
"""


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


def test_huge_pages_environment_adds_the_tunable_once_and_keeps_the_others(monkeypatch):
  monkeypatch.setattr(host_memory, '_transparent_huge_pages', lambda: True)
  monkeypatch.setattr(host_memory.platform, 'libc_ver', lambda: ('glibc', '2.36'))
  env = huge_pages_environment({'GLIBC_TUNABLES': 'glibc.malloc.tcache_count=0', 'A': '1'})
  assert env == {'GLIBC_TUNABLES': f'glibc.malloc.tcache_count=0:{HUGE_PAGES_TUNABLE}', 'A': '1'}
  assert huge_pages_environment(env) is None  # Already set: no second restart.
  assert huge_pages_environment({'DETSEG_HUGE_PAGES': '0'}) is None
  monkeypatch.setattr(host_memory, '_transparent_huge_pages', lambda: False)
  assert huge_pages_environment({}) is None  # Nothing to gain: no restart.


@pytest.mark.skipif(huge_pages_environment({}) is None,
                    reason='no glibc or transparent huge pages here')
def test_a_script_restarts_once_with_the_tunable_and_its_arguments():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {k: v for k, v in os.environ.items() if k not in ('GLIBC_TUNABLES', 'DETSEG_HUGE_PAGES')}
  out = subprocess.run([sys.executable, '-c', _SCRIPT, '--flag=1'], capture_output=True,
                       text=True, cwd=repo, env=env, check=True).stdout.splitlines()
  assert [line.split()[0] for line in out] == ['before', 'before', 'after']
  assert out[0].split()[1] == out[2].split()[1]  # exec keeps the process.
  assert out[2].endswith(f"{HUGE_PAGES_TUNABLE} ['--flag=1']")
