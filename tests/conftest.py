"""Test set-up shared by every test module.

Four simulated CPU devices (so data-parallel tests can compare against one device), the persistent
compilation cache (compile time dominates small tests), and a session-wide TFDS data dir so the
Shapes data is generated once per test run.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
jax.config.update("jax_compilation_cache_dir", os.path.join(_REPO, ".cache", "jax"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A TFDS data dir shared by the whole test session (datasets are generated into it once)."""
  path = tmp_path_factory.mktemp("tensorflow_datasets")
  os.environ["TFDS_DATA_DIR"] = str(path)
  return str(path)
