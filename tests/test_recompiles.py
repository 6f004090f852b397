"""The lowering counter the train loop uses to prove that its step compiled once."""
import threading

import jax
import jax.numpy as jnp

from training.recompiles import count_lowerings


def test_counts_new_executables_only():
  double = jax.jit(lambda x: 2 * x)
  three, other_three, five = jnp.ones(3), jnp.zeros(3), jnp.ones(5)  # Eager ops compile too.
  with count_lowerings() as first:
    double(three)
  with count_lowerings() as same_shape:
    double(three)
    double(other_three)
  with count_lowerings() as new_shape:
    double(five)
  assert (first.count, same_shape.count, new_shape.count) == (1, 0, 1)


def test_other_threads_compiles_are_not_counted():
  triple, seven = jax.jit(lambda x: 3 * x), jnp.ones(7)
  with count_lowerings() as here:
    worker = threading.Thread(target=lambda: triple(seven))
    worker.start()
    worker.join()
  assert here.count == 0
