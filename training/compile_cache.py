"""The persistent XLA compilation cache, on by default: recompiling a known step takes seconds."""
import os

import jax

DEFAULT_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'detseg_jax', 'xla')


def enable(cache_dir: str | None = None):
  cache_dir = cache_dir or os.environ.get('DETSEG_COMPILE_CACHE', DEFAULT_DIR)
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
