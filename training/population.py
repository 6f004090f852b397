"""Vectorised populations: K models of one config trained together in one process, and PBT.

Hyperparameters that leave every shape alone (peak learning rate, weight decay, seed) become
arrays with a leading population axis. Parameters, batch statistics, optimizer state and RNG get
the same axis, and the trainer's pure step runs over that axis, so a population step computes
exactly what K separate steps would: under `jax.vmap` in one program (`mode='vmap'`, for
accelerators, where per-member weights become one grouped convolution), unrolled, K copies of the
step in one program (`mode='unroll'`), or one compiled member step called for each member in turn
(`mode='loop'`, the default on CPU). On XLA:CPU grouped convolutions run ~3.6x slower than K
separate ones and a `lax.map` loop ~20x slower; the unrolled program runs at the speed of K
separate steps but compiles K times longer, so a Python loop over one compiled step is fastest
there (an 8-trial sweep: 1.40x faster than the trials one by one, unroll 1.13x; BENCHMARKS.md).
Each member's hyperparameters live in its optimizer state (`optax.inject_hyperparams`): before
every update the member's learning rate is set to `peak * lr_multiplier(step)`, which is the
config's schedule with the member's own peak. All members see the same batches, like separate
runs with the same seed; when seeds differ, each member reads its own data order. The population
axis is sharded over a device mesh axis `pop`.

Population-based training (Jaderberg et al. 2017, "Population Based Training of Neural
Networks"): every `PBT.interval` steps the worst members copy the weights and optimizer state of
the best ones and perturb the copied hyperparameters; each member's lineage is logged.
"""
import dataclasses
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import data
import tasks
from training.checkpoint import Checkpointer
from training.evaluate import Evaluator, scalar_metrics, write_metrics
from training.loop import Run, run_loop
from training.optim import lr_multiplier, make_optimizer
from training.parallel import check_batch_size
from training.state import example_batch, init_state
from training.step import config_xla_options, make_train_step
from training.writers import MetricWriter

# Config fields a population can vary; every other field must be equal across members.
CONFIG_KEYS = {'optimizer.learning_rate': 'learning_rate',
               'optimizer.weight_decay': 'weight_decay', 'seed': 'seed'}
OPTIMIZER_HPARAMS = ('learning_rate', 'weight_decay')


@dataclasses.dataclass(frozen=True)
class PBT:
  interval: int  # Exploit and explore every this many steps.
  fraction: float = 0.25  # The worst `fraction` of members copy one of the best `fraction`.
  perturb: tuple = (0.8, 1.25)  # A copied hyperparameter is multiplied by one of these.
  seed: int = 0  # Which member is copied and which factor is drawn.


def non_vectorizable(keys) -> list[str]:
  """The swept config fields that a population cannot vary (they change shapes or the graph)."""
  return sorted(set(keys) - set(CONFIG_KEYS))


def member_hparams(configs) -> dict:
  """{'learning_rate': [K] peak rates, 'weight_decay': [K]} from the members' configs."""
  return {name: np.asarray([c.optimizer[name] for c in configs], np.float32)
          for name in OPTIMIZER_HPARAMS}


def _flat(tree: dict, prefix: str = ''):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flat(value, f'{prefix}{key}.')
    elif f'{prefix}{key}' not in CONFIG_KEYS:
      yield f'{prefix}{key}', value


def _check_same_config(configs):
  reference = dict(_flat(configs[0].to_dict()))
  for i, c in enumerate(configs[1:], start=1):
    other = dict(_flat(c.to_dict()))
    differ = sorted(k for k in reference.keys() | other.keys() if reference.get(k) != other.get(k))
    if differ:
      raise ValueError(f'population member {i} differs from member 0 in {", ".join(differ)}; a '
                       f'population can only vary {", ".join(CONFIG_KEYS)}.')


def init_population(task, model, tx, seeds, batch):
  """A TrainState whose every leaf has a leading [K] axis: `init_state` vmapped over seeds."""
  keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.int32))
  return jax.vmap(lambda key: init_state(task, model, tx, key, batch))(keys)


MODES = ('vmap', 'unroll', 'loop')


def _member(tree, i):
  """Member i's slice (i may be an index array) of a tree with a leading population axis."""
  return jax.tree.map(lambda x: x[i], tree)


def _stack(trees):
  """Per-member trees -> one tree with a leading population axis (the inverse of `_member`)."""
  return jax.tree.map(lambda *x: jnp.stack(x), *trees)


def default_mode() -> str:
  return 'loop' if jax.default_backend() == 'cpu' else 'vmap'


def make_population_step(task, multiplier, *, per_member_batch: bool, mode: str = 'vmap',
                         microbatches: int = 1):
  """`step(state, hparams, batch) -> (state, metrics)`, the trainer's step over all members.

  'vmap': per-member conv weights become grouped convolutions, fast on accelerators; on XLA:CPU a
  population step then costs ~3.6x its K separate steps (fcn8s, K=4: 5.86 s vs 4 x 0.39 s).
  'unroll': the members' steps side by side in one program, each with ordinary convolutions
  (1.48 s there). (`lax.map` over the members took 30.8 s: XLA:CPU is slow inside loops.)
  'loop': the step of one member; `compile_population_step` calls it for each.
  `microbatches`: config.microbatches (training/step.py), the same for every member.
  """
  if mode not in MODES:
    raise ValueError(f'Unknown population mode {mode!r}; valid: {", ".join(MODES)}')
  train_step = make_train_step(task, microbatches=microbatches)

  def member_step(state, hparams, batch):
    opt_state = state.opt_state
    injected = {**opt_state.hyperparams,
                'learning_rate': hparams['learning_rate'] * multiplier(opt_state.count),
                'weight_decay': hparams['weight_decay']}
    return train_step(state.replace(opt_state=opt_state._replace(hyperparams=injected)), batch)

  if mode == 'vmap':
    return jax.vmap(member_step, in_axes=(0, 0, 0 if per_member_batch else None))
  if mode == 'loop':  # One member per call; compile_population_step loops over them.
    return member_step

  def unrolled(state, hparams, batch):
    return _stack([member_step(_member(state, i), _member(hparams, i),
                               _member(batch, i) if per_member_batch else batch)
                   for i in range(len(hparams['learning_rate']))])

  return unrolled


def compile_population_step(task, multiplier, mesh: Mesh, *, per_member_batch: bool, mode: str,
                            microbatches: int = 1):
  """The population step on `mesh`'s 'pop' axis: `step(state, hparams, batch) -> (state, metrics)`.

  'vmap' and 'unroll' are one program, shard_mapped so that each device steps its own members
  (letting jit partition the vmapped step fails in XLA's partitioner for the grouped convolutions
  that vmap creates). 'loop' compiles one member's step and calls it for each member in turn, on
  the device that holds the member: the whole step of K members then costs K single steps plus
  one compile, and the population still saves the K processes, data pipelines and compiles of
  separate runs.
  """
  member_step = make_population_step(task, multiplier, per_member_batch=per_member_batch,
                                     mode=mode, microbatches=microbatches)
  options = config_xla_options(task.config, 'xla_options')
  if mode != 'loop':
    batch_spec = P('pop') if per_member_batch else P()
    return jax.jit(jax.shard_map(member_step, mesh=mesh, out_specs=(P('pop'), P('pop')),
                                 in_specs=(P('pop'), P('pop'), batch_spec)), donate_argnums=0,
                   compiler_options=options)
  pop = NamedSharding(mesh, P('pop'))
  step = jax.jit(member_step, compiler_options=options)
  take, stack = jax.jit(_member), jax.jit(_stack)

  def loop(state, hparams, batch):
    size, devices = len(hparams['learning_rate']), list(mesh.devices.flat)
    per_device = size // len(devices)
    blocks = []  # Each device's members, stacked on that device.
    for d, device in enumerate(devices):
      outs = []
      for i in range(d * per_device, (d + 1) * per_device):
        member = jax.device_put((take(state, i), take(hparams, i),
                                 take(batch, i) if per_member_batch else batch), device)
        outs.append(step(*member))
      blocks.append(stack(outs))
    return jax.tree.map(lambda *x: jax.make_array_from_single_device_arrays(
        (size,) + x[0].shape[1:], pop, list(x)), *blocks)

  return loop


def population_mesh(size: int, devices=None) -> Mesh:
  """A 1-D mesh `pop` over the most devices that divide the population size."""
  devices = list(devices if devices is not None else jax.devices())
  count = max(n for n in range(1, len(devices) + 1) if size % n == 0)
  return Mesh(np.asarray(devices[:count]), ('pop',))


def exploit_and_explore(losses, hparams: dict, keys, pbt: PBT, rng: np.random.Generator):
  """One PBT round on the host: (source member of each member, new hparams, [(dst, src)]).

  Members with a non-finite loss always count among the worst, so a diverged one is replaced.
  """
  losses = np.where(np.isfinite(losses), losses, np.inf)
  order = np.argsort(losses, kind='stable')  # Best first.
  count = max(1, int(round(pbt.fraction * len(losses))))
  best = order[:count]
  worst = [i for i in order[count:] if i in order[-count:] or not np.isfinite(losses[i])]
  source = np.arange(len(losses))
  hparams = {k: v.copy() for k, v in hparams.items()}
  for member in worst:
    source[member] = rng.choice(best)
    for key in keys:
      hparams[key][member] = hparams[key][source[member]] * rng.choice(pbt.perturb)
  return source, hparams, [(int(m), int(source[m])) for m in worst]


class _Population:
  """The members' mutable bookkeeping: hyperparameters, lineage, divergence. JSON round trip."""

  def __init__(self, hparams: dict):
    self.hparams = hparams
    size = len(hparams['learning_rate'])
    # lineage[i]: [member, from_step] segments, oldest first: whose weights member i carries.
    self.lineage = [[[i, 0]] for i in range(size)]
    self.diverged = [None] * size

  def member(self, i: int) -> dict:
    # 7 digits: float32 values without their binary noise (1e-4, not 9.999999747378752e-05).
    return {k: float(f'{v[i]:.7g}') for k, v in self.hparams.items()}

  def to_json(self) -> dict:
    return {'hparams': {k: v.tolist() for k, v in self.hparams.items()},
            'lineage': self.lineage, 'diverged': self.diverged}

  def load_json(self, saved: dict):
    self.hparams = {k: np.asarray(v, np.float32) for k, v in saved['hparams'].items()}
    self.lineage, self.diverged = saved['lineage'], saved['diverged']

  def lineage_text(self, member: int) -> str:
    return ' > '.join(f'{m}@{s}' for m, s in self.lineage[member])

  def copy_member(self, dst: int, src: int, step: int):
    self.lineage[dst] = [list(x) for x in self.lineage[src]] + [[dst, step]]
    self.diverged[dst] = None


def train_population(configs, workdirs, popdir: str, *, pbt: PBT | None = None, devices=None,
                     progress: bool = False, mode: str | None = None):
  """Trains one member per config (members differ only in CONFIG_KEYS), one jitted step for all.

  Every member writes metrics.jsonl, TensorBoard events, config.json and eval/ into its own
  workdir, as `training.loop.train_and_evaluate` would, through the same loop (`run_loop`);
  `popdir` holds the population's checkpoints and the PBT log, so a rerun resumes. Returns (state
  with a leading member axis, per member {'status', 'message', 'hparams', 'lineage'}). `mode`:
  one of MODES (None: `default_mode()`).
  """
  _check_same_config(configs)
  config, size = configs[0], len(configs)
  check_batch_size(config.batch_size, 1, config.get('microbatches', 1))  # A member's device.
  os.makedirs(popdir, exist_ok=True)
  _check_members(popdir, workdirs)
  for c, workdir in zip(configs, workdirs, strict=True):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(c.to_json_best_effort(indent=2))

  task = tasks.get_task(config)
  seeds = [c.seed for c in configs]
  per_member_batch = len(set(seeds)) > 1  # Separate runs with different seeds read differently.
  data.ensure_prepared(config.data)
  data_config = config.data
  if per_member_batch and data_config.worker_count < 0:
    # One iterator per member: 'one worker process per core' each would start K x cores.
    data_config = data_config.copy_and_resolve_references()
    data_config.worker_count = 0
  iterators = [data.make_train_iterator(data_config, global_batch_size=config.batch_size, seed=s,
                                       targets=task.pixel_targets)
               for s in (seeds if per_member_batch else seeds[:1])]
  tx = make_optimizer(config.optimizer, config.total_steps, scheduled=False)
  state = init_population(task, task.build_model(), tx, seeds, example_batch(task.info))
  members = _Population(member_hparams(configs))

  mesh = population_mesh(size, devices)
  pop = NamedSharding(mesh, P('pop'))
  state = jax.device_put(state, pop)
  checkpointer = Checkpointer(os.path.join(popdir, 'checkpoints'), max_to_keep=1, finite=False)
  restored = checkpointer.restore(state)
  if restored is not None:
    state, saved = restored
    for it, it_state in zip(iterators, saved['iterators'], strict=True):
      it.set_state(it_state)
    members.load_json(saved['population'])
    logging.info('Population resumed from step %d in %s', int(state.step[0]), popdir)

  step_fn = compile_population_step(task, lr_multiplier(config.optimizer, config.total_steps),
                                    mesh, per_member_batch=per_member_batch,
                                    mode=mode or default_mode(),
                                    microbatches=config.get('microbatches', 1))
  copy_fn = jax.jit(lambda s, src: _member(s, src).replace(rng=s.rng),
                    out_shardings=pop, donate_argnums=0)
  evaluator = Evaluator(task, config)
  first_step = int(state.step[0])
  writers = [MetricWriter(w, resume_step=first_step) for w in workdirs]
  run = _PopulationRun(config, workdirs, popdir, pbt, state, members, iterators, per_member_batch,
                       pop, step_fn, copy_fn, checkpointer, evaluator, writers, progress)
  try:
    run_loop(run, config, first_step)
  finally:  # Stops grain's worker processes (and frees their shared memory), if any.
    for it in iterators:
      it.close()
  state = run.state
  for writer in writers:
    writer.close()
  checkpointer.close()
  return state, [{'status': 'diverged' if members.diverged[i] else 'done',
           'message': members.diverged[i] or '',
           'hparams': members.member(i),
           'lineage': members.lineage_text(i)} for i in range(size)]


class _PopulationRun(Run):
  """The hooks of `run_loop` for a population: per-member logs and evaluations, PBT rounds."""

  def __init__(self, config, workdirs, popdir, pbt, state, members, iterators, per_member_batch,
               pop, step_fn, copy_fn, checkpointer, evaluator, writers, progress):
    self.config, self.workdirs, self.popdir, self.pbt = config, workdirs, popdir, pbt
    self.state, self.members, self.iterators = state, members, iterators
    self.per_member_batch, self.pop, self.step_fn, self.copy_fn = (per_member_batch, pop, step_fn,
                                                                   copy_fn)
    self.checkpointer, self.evaluator, self.writers = checkpointer, evaluator, writers
    self.progress = progress
    self.explore_keys = [k for k in OPTIMIZER_HPARAMS if len(set(members.hparams[k].tolist())) > 1]
    self.since_exploit = []

  def next_batch(self, step):
    batches = [next(it) for it in self.iterators]
    return jax.tree.map(lambda *x: np.stack(x), *batches) if self.per_member_batch else batches[0]

  def step(self, step, batch):
    self.state, metrics = self.step_fn(self.state, jax.device_put(self.members.hparams, self.pop),
                                       batch)
    self.since_exploit.append(metrics['loss'])
    return metrics

  def log(self, step, history):
    members = self.members
    summary = {k: np.mean([m[k] for m in jax.device_get(history)], axis=0) for k in history[0]}
    for i, writer in enumerate(self.writers):
      writer.write_scalars(step, {k: v[i] for k, v in summary.items()}, prefix='train/')
      if members.diverged[i] is None and not np.isfinite(summary['loss'][i]):
        members.diverged[i] = f'loss became {summary["loss"][i]} by step {step}'
        logging.warning('member %d (%s): %s', i, self.workdirs[i], members.diverged[i])

  def after_log(self, step, is_last):
    pbt = self.pbt
    if pbt and step % pbt.interval == 0 and not is_last:
      losses = np.mean(jax.device_get(self.since_exploit), axis=0)
      source, self.members.hparams, copies = exploit_and_explore(
          losses, self.members.hparams, self.explore_keys, pbt,
          np.random.default_rng([pbt.seed, step]))  # Seeded by step: resuming draws the same.
      self.state = self.copy_fn(self.state, jnp.asarray(source))
      _record_exploits(self.popdir, step, copies, losses, self.members)
      self.since_exploit = []

  def checkpoint(self, step, metrics):
    self.checkpointer.save(step, self.state, {
        'iterators': [it.get_state() for it in self.iterators],
        'population': self.members.to_json()})

  def evaluate(self, step, is_last):
    config = self.config
    for i, (writer, workdir) in enumerate(zip(self.writers, self.workdirs, strict=True)):
      if self.members.diverged[i] is not None:
        continue
      variables = _member(self.state.variables, i)
      eval_dir = os.path.join(workdir, 'eval')
      metrics_i = self.evaluator.run(variables, eval_dir, progress=self.progress,
                                     num_overlays=config.num_overlays if is_last else 0)
      writer.write_scalars(step, scalar_metrics(metrics_i), prefix='eval/')
      if is_last:
        write_metrics(metrics_i, eval_dir, step)


def _check_members(popdir: str, workdirs):
  path = os.path.join(popdir, 'members.json')
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved != list(workdirs):
      raise ValueError(f'{popdir} holds a population of {saved}, not {list(workdirs)}; '
                       'delete it or use another sweep workdir.')
  with open(path, 'w') as f:
    json.dump(list(workdirs), f)


def _record_exploits(popdir: str, step: int, copies, losses, members: _Population):
  with open(os.path.join(popdir, 'pbt.jsonl'), 'a') as f:
    for dst, src in copies:
      members.copy_member(dst, src, step)
      hparams = members.member(dst)
      logging.info('PBT step %d: member %d (loss %.4g) <- member %d (loss %.4g), now %s; '
                   'lineage %s', step, dst, losses[dst], src, losses[src],
                   ', '.join(f'{k}={v:.3g}' for k, v in hparams.items()),
                   members.lineage_text(dst))
      f.write(json.dumps({'step': step, 'member': dst, 'copied': src, 'hparams': hparams,
                          'lineage': members.lineage_text(dst)}) + '\n')
