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


def model_inputs(task, batch):
  """`task.model_inputs` of a batch whose image is the pipeline's uint8: the one place where it
  becomes the models' float32 in [0, 1], on the device (4x fewer bytes cross from the host)."""
  image = batch['image']
  if image.dtype == jnp.uint8:  # Float images (hand-made batches) are already in [0, 1].
    batch = {**batch, 'image': image.astype(jnp.float32) * jnp.float32(1 / 255)}
  return task.model_inputs(batch)


def make_train_step(task, axis_name=None):
  def train_step(state, batch):
    # One key per step: resuming at step k draws the same randomness as an uninterrupted run.
    rng = jax.random.fold_in(state.rng, state.step)
    dropout_rng, sample_rng = jax.random.split(rng)
    if axis_name is not None:
      # Dropout gets the one-device key: models.layers.Dropout draws the whole batch's mask and
      # keeps this device's rows. 'sample' draws (R-CNN RoI sampling, patch positions, caption
      # sampling) size themselves by the local batch, so each device gets its own key there.
      sample_rng = jax.random.fold_in(sample_rng, lax.axis_index(axis_name))
    args, kwargs = model_inputs(task, batch)

    def loss_fn(params):
      variables = {**state.variables, 'params': params}
      outputs, updates = state.apply_fn(
          variables, *args, train=True, rngs={'dropout': dropout_rng, 'sample': sample_rng},
          mutable=['batch_stats'], **kwargs)
      loss, aux = task.loss(outputs, batch)
      return loss, (aux, updates)

    (loss, (aux, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    if axis_name is not None:
      grads, loss, aux = lax.pmean((grads, loss, aux), axis_name)
    param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, param_updates),
        opt_state=opt_state, batch_stats=updates.get('batch_stats', state.batch_stats))
    metrics = {
        'loss': loss, **aux,
        'grad_norm': optax.global_norm(grads),
        'param_norm': optax.global_norm(new_state.params),
        'learning_rate': jnp.asarray(opt_state.hyperparams['learning_rate'], jnp.float32),
    }
    return new_state, metrics

  return train_step


def make_eval_step(task):
  """`eval_step(variables, batch) -> predictions`: model in inference mode + task postprocess."""
  def eval_step(variables, batch):
    args, kwargs = model_inputs(task, batch)
    outputs = task.model.apply(variables, *args, train=False, **kwargs)
    return task.postprocess(outputs, batch)

  return eval_step
