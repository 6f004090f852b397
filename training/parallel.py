"""Data parallelism: a batch sharded over a device mesh (`jit`, the default) or `pmap`.

Both wrap the same pure step. Parameters are replicated; the batch is split along its leading axis
over the mesh axis `data` (jit) or the pmapped axis `batch` (pmap). Every host feeds its own
shard of the global batch (`process_count` > 1 after `initialize_distributed`).
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from training.step import check_microbatches, checked_xla_options

PARALLEL_MODES = ('jit', 'pmap')
PMAP_AXIS = 'batch'


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None):
  """`jax.distributed.initialize` for a multi-process run (one call per process, before any
  computation). None arguments are auto-detected on clusters JAX knows (SLURM, Cloud TPU, ...).

  Collectives between the CPU devices of different processes go through gloo (what
  tests/test_multihost.py runs on); GPUs and TPUs ignore this setting.
  """
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def check_batch_size(batch_size: int, num_devices: int, microbatches: int = 1):
  """`config.batch_size` must split evenly over the devices, and each device's share into
  `config.microbatches` slices (training/step.py)."""
  if batch_size % num_devices:
    raise ValueError(f'config.batch_size={batch_size} is not divisible by the {num_devices} '
                     'devices; pick a multiple of the device count.')
  per_device = batch_size // num_devices
  check_microbatches(microbatches)
  if per_device % microbatches:
    raise ValueError(f'config.microbatches={microbatches} does not divide the {per_device} '
                     f'examples each of the {num_devices} devices gets per step; pick a divisor '
                     f'of {per_device}.')


class DataParallel:
  """Places states and batches on devices and compiles the train step for one parallel mode."""

  def __init__(self, mode: str = 'jit', devices=None):
    if mode not in PARALLEL_MODES:
      raise ValueError(f'unknown config.parallel {mode!r}; valid: {", ".join(PARALLEL_MODES)}')
    self.mode = mode
    self.devices = list(devices if devices is not None else jax.devices())
    # pmap's outputs are sharded over a mesh axis named after its axis_name; inputs placed on the
    # same mesh keep the second step from compiling again for a new input sharding.
    axis = PMAP_AXIS if mode == 'pmap' else 'data'
    self.mesh = Mesh(np.asarray(self.devices), (axis,))
    self.replicated = NamedSharding(self.mesh, P())
    self.data_sharding = NamedSharding(self.mesh, P(axis))

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def axis_name(self):
    """The collective axis name the step (and batch norm) must use, or None."""
    return PMAP_AXIS if self.mode == 'pmap' else None

  def check_batch_size(self, global_batch_size: int, microbatches: int = 1):
    check_batch_size(global_batch_size, self.num_devices, microbatches)

  def compile_train_step(self, train_step, xla_options=None):
    """`xla_options`: XLA compiler options (config.xla_options). Options XLA refuses raise
    ValueError here, not minutes later when the step compiles."""
    options = checked_xla_options(xla_options, 'xla_options')
    if self.mode == 'pmap':
      return PmapWithOptions(jax.pmap(train_step, axis_name=PMAP_AXIS, devices=self.devices,
                                      donate_argnums=0), options)
    return jax.jit(train_step, in_shardings=(self.replicated, self.data_sharding),
                   out_shardings=(self.replicated, self.replicated), donate_argnums=0,
                   compiler_options=options)

  def _put_stacked(self, tree):
    """Host-local arrays with a leading per-local-device axis -> pmap's global inputs."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.data_sharding, x), tree)

  @property
  def num_local_devices(self) -> int:
    return sum(d.process_index == jax.process_index() for d in self.devices)

  def put_state(self, state):
    if self.mode == 'pmap':
      n = self.num_local_devices
      return self._put_stacked(jax.tree.map(
          lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), state))
    return jax.device_put(state, self.replicated)

  def get_state(self, state):
    """A single-copy state (for checkpoints and evaluation)."""
    if self.mode == 'pmap':
      # The copy on this process's first device. Not x[0]: that launches a program with
      # collectives on every device, per leaf. Launched while the step still ran, they once left
      # the step's all-reduce waiting for two of XLA:CPU's four simulated devices (their
      # launches blocked on a semaphore) until XLA aborted the process. After the step, a
      # program on one device waits for no other.
      return jax.tree.map(lambda x: x.addressable_data(0)[0], jax.block_until_ready(state))
    return state

  def host_local(self, tree):
    """A replicated (single-copy) tree as arrays on this process's first device.

    Per-host work (every host evaluates the whole split) then runs without cross-host
    collectives; with one process this is the tree itself.
    """
    if jax.process_count() == 1:
      return tree
    return jax.tree.map(lambda x: x.addressable_data(0), tree)

  def put_batch(self, local_batch: dict):
    """Host-local numpy batch -> device arrays (global array for jit, stacked shards for pmap)."""
    if self.mode == 'pmap':
      n = self.num_local_devices
      local_batch = jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]),
                                 local_batch)
    return self._put_stacked(local_batch)

  def metrics_to_host(self, metrics):
    if self.mode == 'pmap':  # Device 0's copy, read on the host: no program (see get_state).
      return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], metrics)
    return jax.device_get(metrics)


class PmapWithOptions:
  """A `jax.pmap` function whose executables compile with XLA compiler options, which jax.pmap
  does not take: one executable per input signature, compiled at the first call with it.

  Without `CPU_XLA_OPTIONS` (configs/common.py) XLA:CPU runs convolutions and their gradients on
  YNNPACK: FCN-8s (128 px, batch 16) trained at 32.4 img/s under pmap against 43 under jit
  (2026-12-07, 2-core box); a 3x3 32 -> 32 convolution's gradients at 64x64 x16 took 60 against
  24 ms.
  """

  def __init__(self, pmapped, options: dict | None):
    self.pmapped, self.options, self._executables = pmapped, options, {}

  def lower(self, *args):
    return _LoweredWithOptions(self.pmapped.lower(*args), self.options)

  def __call__(self, *args):
    leaves, tree = jax.tree.flatten(args)
    signature = (tree, tuple((x.shape, x.dtype, getattr(x, 'sharding', None)) for x in leaves))
    if signature not in self._executables:
      self._executables[signature] = self.lower(*args).compile()
    return self._executables[signature](*args)


class _LoweredWithOptions:
  """A pmap's `Lowered` whose `compile` adds the options (`PmapWithOptions`)."""

  def __init__(self, lowered, options: dict | None):
    self.lowered, self.options = lowered, options

  def compile(self, compiler_options: dict | None = None):
    return self.lowered.compile({**(self.options or {}), **(compiler_options or {})} or None)

  def __getattr__(self, name):
    return getattr(self.lowered, name)
