"""Test set-up shared by every test module.

Four simulated CPU devices (so data-parallel tests can compare against one device), XLA's
quick-to-compile CPU emitters, the persistent compilation cache (compile time dominates small
tests), checkpoints written by one replica, a session-wide TFDS data dir so the Shapes data is
generated once per test run, and the slowest modules first.
"""
import os

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CACHE = os.path.join(_REPO, ".cache", "jax")
# Set in the environment so that train.py subprocesses started by tests behave the same.
# XLA's older CPU emitters instead of its fusion emitters: they compile a train step 3-4x faster
# (Mask R-CNN :runlocal 12.7 s -> 3.1 s, FCN-8s 6.4 -> 2.0, Faster R-CNN 9.3 -> 3.7, box load ~4)
# and run it up to 2x slower (0.09 -> 0.22 s), a gain for tests that run a few steps.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4 "
                      "--xla_cpu_use_fusion_emitters=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("DETSEG_COMPILE_CACHE", _CACHE)
# Tests run few steps: compiling fast matters more than running fast (as flax's examples do).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
import pytest  # noqa: E402

from training import compile_cache  # noqa: E402

compile_cache.enable(os.environ["DETSEG_COMPILE_CACHE"])  # Ours, or one given (an empty one).
# Orbax writes a state replicated over several devices "replica-parallel": each device saves a
# slice of every array, and slicing compiles one small XLA program per array shape and device. On
# the 4 simulated CPU devices that made a model's first save take seconds to tens of seconds (15 s
# vs 1.2 s for Mask R-CNN's 231 arrays on a busy box), in every test process that trains it. The
# devices share one host's memory, so there is nothing to parallelise: one replica writes (the
# arrays on disk are the same).
ocp.type_handlers.register_type_handler(
    jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A TFDS data dir shared by the whole test session (datasets are generated into it once)."""
  path = tmp_path_factory.mktemp("tensorflow_datasets")
  os.environ["TFDS_DATA_DIR"] = str(path)
  return str(path)


# The slowest modules, slowest first (seconds summed per module in a fresh-clone run under load
# ~5: test_configs 340, test_train 210, the population's one test 209, ... test_sweep_tool 79).
# `make test` sends whole modules to the workers in collection order (--no-loadscope-reorder;
# xdist would otherwise order them by test count, which put the population module, 3 tests, and
# test_sweep_tool among the last): longest first leaves short modules to fill the end.
SLOW_FIRST = ('test_configs.py', 'test_train.py', 'test_sweep_population.py',
              'test_detection_rcnn.py', 'test_own_data.py', 'test_mask_rcnn.py',
              'test_detection_faster_rcnn.py', 'test_parity_torchvision.py', 'test_sweep_tool.py')


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)
  items.sort(key=rank)  # Stable: tests keep their order within a module.
