"""The pure train and eval steps shared by every task.

`train_step(state, batch) -> (state, metrics)` is one function for all tasks: the task supplies
the model inputs and the loss `loss(outputs, batch) -> (scalar, aux_metrics)`. Under `pmap` the
gradients, metrics and batch-norm statistics are averaged over `axis_name`; under sharded `jit`
the global batch is one array and XLA inserts the reductions itself.
"""
import jax
import jax.numpy as jnp
import optax
from jax import lax

from models.layers import convolutions_in_loop_body


def model_inputs(task, batch):
  """`task.model_inputs` of a batch whose image is the pipeline's uint8: the one place where it
  becomes the models' float32 in [0, 1], on the device (4x fewer bytes cross from the host)."""
  image = batch['image']
  if image.dtype == jnp.uint8:  # Float images (hand-made batches) are already in [0, 1].
    batch = {**batch, 'image': image.astype(jnp.float32) * jnp.float32(1 / 255)}
  return task.model_inputs(batch)


def check_microbatches(microbatches: int):
  if microbatches < 1:
    raise ValueError(f'config.microbatches must be at least 1 (got {microbatches}).')


def split_microbatches(batch, microbatches: int):
  """[B, ...] leaves -> [microbatches, B / microbatches, ...]; microbatch i holds rows i, i + m,
  i + 2m, ... so that each device's rows of a batch sharded over devices stay on that device."""
  def split(x):
    if x.shape[0] % microbatches:  # train.py checks the config first (DataParallel).
      raise ValueError(f'{microbatches} microbatches do not divide a batch of {x.shape[0]}.')
    x = x.reshape(x.shape[0] // microbatches, microbatches, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def make_train_step(task, axis_name=None, microbatches: int = 1):
  """`microbatches` > 1: the batch runs through the model in that many sequential slices whose
  gradients are summed (`lax.scan`), so activation memory is that of one slice (+ one gradient
  buffer). The step's gradient is the mean of the slices' gradients: the whole batch's when its
  loss is a mean over equal-sized parts (Faster R-CNN samples 256 anchors and 512 RoIs per image,
  so its loss is). Metrics are the slices' means. Batch norms that use batch statistics see one
  slice at a time and update their running averages once per slice."""
  check_microbatches(microbatches)

  def train_step(state, batch):
    # One key per step: resuming at step k draws the same randomness as an uninterrupted run.
    rng = jax.random.fold_in(state.rng, state.step)
    dropout_rng, sample_rng = jax.random.split(rng)
    if axis_name is not None:
      # Dropout gets the one-device key: models.layers.Dropout draws the whole batch's mask and
      # keeps this device's rows. 'sample' draws (R-CNN RoI sampling, patch positions, caption
      # sampling) size themselves by the local batch, so each device gets its own key there.
      sample_rng = jax.random.fold_in(sample_rng, lax.axis_index(axis_name))

    def grads_of(batch_stats, batch, rngs):
      args, kwargs = model_inputs(task, batch)

      def loss_fn(params):
        variables = {**state.variables, 'params': params}
        if batch_stats:
          variables['batch_stats'] = batch_stats
        outputs, updates = state.apply_fn(variables, *args, train=True, rngs=rngs,
                                          mutable=['batch_stats'], **kwargs)
        loss, aux = task.loss(outputs, batch)
        return loss, (aux, updates.get('batch_stats', batch_stats))

      (loss, (aux, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
      return grads, batch_stats, loss, aux

    rngs = {'dropout': dropout_rng, 'sample': sample_rng}
    if microbatches == 1:
      grads, batch_stats, loss, aux = grads_of(state.batch_stats, batch, rngs)
    else:
      def accumulate(carry, part):
        grad_sum, batch_stats = carry
        i, part = part
        with convolutions_in_loop_body():  # Gradients XLA:CPU runs fast in a loop body.
          grads, batch_stats, loss, aux = grads_of(
              batch_stats, part, {k: jax.random.fold_in(r, i) for k, r in rngs.items()})
        return (jax.tree.map(jnp.add, grad_sum, grads), batch_stats), (loss, aux)

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (grads, batch_stats), (loss, aux) = lax.scan(
          accumulate, (zeros, state.batch_stats),
          (jnp.arange(microbatches), split_microbatches(batch, microbatches)))
      grads = jax.tree.map(lambda g: g / microbatches, grads)
      loss, aux = jax.tree.map(lambda x: jnp.mean(x, 0), (loss, aux))
    if axis_name is not None:
      grads, loss, aux = lax.pmean((grads, loss, aux), axis_name)
    param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, param_updates),
        opt_state=opt_state, batch_stats=batch_stats)
    metrics = {
        'loss': loss, **aux,
        'grad_norm': optax.global_norm(grads),
        'param_norm': optax.global_norm(new_state.params),
        'learning_rate': jnp.asarray(opt_state.hyperparams['learning_rate'], jnp.float32),
    }
    return new_state, metrics

  return train_step


def compiled_train_step(task, parallel, config):
  """The train step of `config` (`microbatches`, `xla_options`) in `parallel`'s mode."""
  return parallel.compile_train_step(
      make_train_step(task, parallel.axis_name, config.get('microbatches', 1)),
      config.get('xla_options'))


def checked_xla_options(options, field: str) -> dict | None:
  """`config.<field>` as jax.jit's compiler_options (None when empty). Options XLA refuses raise
  ValueError here, not minutes later when the step compiles."""
  options = dict(options or {}) or None
  if options:
    try:  # A trivial program: milliseconds.
      jax.jit(lambda: 0, compiler_options=options).lower().compile()
    except jax.errors.JaxRuntimeError as e:
      raise ValueError(f'config.{field} {options}: XLA refused them ({e}); give names and '
                       "values of XLA's DebugOptions") from e
  return options


def config_xla_options(config, field: str) -> dict | None:
  """`config.<field>` ('xla_options', 'eval_xla_options') checked as jax.jit's compiler_options."""
  return checked_xla_options(config.get(field), field)


def jitted_eval_step(task):
  """`make_eval_step(task)` under jax.jit, compiled with `config.eval_xla_options`."""
  return jax.jit(make_eval_step(task),
                 compiler_options=config_xla_options(task.config, 'eval_xla_options'))


def make_eval_step(task):
  """`eval_step(variables, batch) -> predictions`: model in inference mode + task postprocess."""
  def eval_step(variables, batch):
    args, kwargs = model_inputs(task, batch)
    outputs = task.model.apply(variables, *args, train=False, **kwargs)
    return task.postprocess(outputs, batch)

  return eval_step
