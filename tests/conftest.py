"""Test set-up shared by every test module.

Four simulated CPU devices (so data-parallel tests can compare against one device), the persistent
compilation cache (compile time dominates small tests), and a session-wide TFDS data dir so the
Shapes data is generated once per test run.
"""
import os

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CACHE = os.path.join(_REPO, ".cache", "jax")
# Set in the environment so that train.py subprocesses started by tests behave the same.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("DETSEG_COMPILE_CACHE", _CACHE)
# Tests run few steps: compiling fast matters more than running fast (as flax's examples do).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")

import pytest  # noqa: E402

from training import compile_cache  # noqa: E402

compile_cache.enable(_CACHE)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A TFDS data dir shared by the whole test session (datasets are generated into it once)."""
  path = tmp_path_factory.mktemp("tensorflow_datasets")
  os.environ["TFDS_DATA_DIR"] = str(path)
  return str(path)
