r"""Char-RNN (Karpathy's min-char-rnn, lecture 10): an LSTM language model on any text file.

  python -m tools.sample_text --text README.md --steps 2000 --workdir runs/char_rnn \
      --prompt 'The model' --temperature 0.5 1.0
  python -m tools.sample_text --workdir runs/char_rnn --steps 0 --prompt 'def ' --temperature 0.8

Trains on random windows of `--seq_len` characters (teacher forcing, Adam) of the text but its
last `--val_fraction` (held out: its loss is printed and saved), saves the parameters
and the alphabet to `<workdir>/char_rnn.msgpack` + `char_rnn.json`, then prints `--length`
characters sampled after `--prompt` at each temperature. `--steps 0` samples from the saved
model. The network is `models.rnn.CaptionDecoder` with a zero conditioning feature: a language
model is a captioner that sees no image. Low temperatures sharpen softmax(logits / T) towards
the most likely character (repetitive text); high ones flatten it (creative misspellings).
"""
import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from losses.captioning import caption_loss
from models.rnn import CaptionDecoder
from ops.tokens import UNK

_FIRST = UNK + 1  # Characters take the ids after the special tokens.


class CharModel:
  """The alphabet, the decoder and its parameters; `encode` / `decode` map text <-> ids."""

  def __init__(self, chars: str, params=None, *, hidden: int = 256, embed_dim: int = 64,
               cell: str = 'lstm'):
    self.chars = chars
    self.index = {c: i + _FIRST for i, c in enumerate(chars)}
    self.sizes = {'hidden': hidden, 'embed_dim': embed_dim, 'cell': cell}
    self.model = CaptionDecoder(vocab_size=len(chars) + _FIRST, **self.sizes)
    self.params = params

  def encode(self, text: str) -> np.ndarray:
    return np.asarray([self.index.get(c, UNK) for c in text], np.int32)

  def decode(self, ids) -> str:
    return ''.join(self.chars[i - _FIRST] if i >= _FIRST else '?' for i in np.asarray(ids))

  def features(self, n: int) -> jax.Array:
    return jnp.zeros((n, 1), jnp.float32)

  def save(self, workdir: str, **extra):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'char_rnn.msgpack'), 'wb') as f:
      f.write(serialization.to_bytes(self.params))
    with open(os.path.join(workdir, 'char_rnn.json'), 'w') as f:
      json.dump({'chars': self.chars, **self.sizes, **extra}, f, indent=2)

  @classmethod
  def load(cls, workdir: str) -> 'CharModel':
    path = os.path.join(workdir, 'char_rnn.json')
    if not os.path.exists(path):
      raise FileNotFoundError(f'{path} not found: train first (--text FILE --steps N)')
    with open(path) as f:
      meta = json.load(f)
    out = cls(meta['chars'], hidden=meta['hidden'], embed_dim=meta['embed_dim'],
              cell=meta['cell'])
    with open(os.path.join(workdir, 'char_rnn.msgpack'), 'rb') as f:
      out.params = serialization.from_bytes(out.init_params(0), f.read())
    return out

  def init_params(self, seed: int):
    return self.model.init(jax.random.PRNGKey(seed), self.features(1),
                           jnp.zeros((1, 2), jnp.int32), train=False)['params']


def train(text: str, steps: int, *, seq_len: int = 64, batch_size: int = 32,
          learning_rate: float = 2e-3, val_fraction: float = 0.1, seed: int = 0,
          log_every: int = 100, **sizes) -> tuple[CharModel, list[float], float]:
  """Trains on random windows of the text but its last `val_fraction`; returns the model, the
  training loss of every step and the loss on the held-out tail (nats per character)."""
  cm = CharModel(''.join(sorted(set(text))), **sizes)
  ids = cm.encode(text)
  cut = len(ids) - int(len(ids) * val_fraction)
  train_ids, val_ids = ids[:cut], ids[cut:]
  if len(train_ids) <= seq_len:
    raise ValueError(f'the text has {len(ids)} characters; --seq_len {seq_len} needs more')
  tx = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(learning_rate))
  params = cm.init_params(seed)
  opt_state = tx.init(params)

  def loss_fn(params, windows, train):
    logits = cm.model.apply({'params': params}, cm.features(windows.shape[0]), windows,
                            train=train)
    return caption_loss(logits, windows)[0]

  @jax.jit
  def step(params, opt_state, windows):
    loss, grads = jax.value_and_grad(loss_fn)(params, windows, True)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  losses, start = [], time.perf_counter()
  for i in range(steps):
    offsets = rng.integers(0, len(train_ids) - seq_len, batch_size)
    windows = train_ids[offsets[:, None] + np.arange(seq_len)]
    params, opt_state, loss = step(params, opt_state, windows)
    losses.append(float(loss))
    if log_every and (i + 1) % log_every == 0:
      print(f'step {i + 1}: loss {np.mean(losses[-log_every:]):.3f} '
            f'({time.perf_counter() - start:.0f} s)', flush=True)
  cm.params = params
  # Non-overlapping windows of the tail, each read from a fresh state as in training.
  count = len(val_ids) // seq_len
  val_loss = (float(jax.jit(loss_fn, static_argnums=2)(
      params, val_ids[:count * seq_len].reshape(count, seq_len), False)) if count else
      float('nan'))
  return cm, losses, val_loss


def sample(cm: CharModel, prompt: str, length: int, temperature: float, seed: int = 0) -> str:
  """`length` characters drawn after `prompt` (the prompt not included), under jit."""
  run = jax.jit(functools.partial(cm.model.apply, method=CaptionDecoder.sample),
                static_argnames='length')
  tokens = run({'params': cm.params}, cm.features(1), cm.encode(prompt)[None], length=length,
               temperature=temperature, rngs={'sample': jax.random.PRNGKey(seed)})
  return cm.decode(tokens[0])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--text', help='training text file (needed when --steps > 0)')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--steps', type=int, default=2000, help='0: sample from the saved model')
  parser.add_argument('--prompt', default='\n')
  parser.add_argument('--temperature', type=float, nargs='+', default=[1.0])
  parser.add_argument('--length', type=int, default=400, help='characters to sample')
  parser.add_argument('--seq_len', type=int, default=64)
  parser.add_argument('--batch_size', type=int, default=32)
  parser.add_argument('--learning_rate', type=float, default=2e-3)
  parser.add_argument('--val_fraction', type=float, default=0.1,
                      help='the end of the text held out for the reported loss')
  parser.add_argument('--hidden', type=int, default=256)
  parser.add_argument('--cell', default='lstm', help="'lstm' or 'rnn'")
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  if args.steps:
    if not args.text:
      parser.error('--text FILE is needed to train (or --steps 0 to sample a saved model)')
    with open(args.text, encoding='utf-8') as f:
      text = f.read()
    cm, losses, val_loss = train(
        text, args.steps, seq_len=args.seq_len, batch_size=args.batch_size,
        learning_rate=args.learning_rate, val_fraction=args.val_fraction, seed=args.seed,
        hidden=args.hidden, cell=args.cell)
    window = min(100, len(losses))
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    cm.save(args.workdir, text=args.text, steps=args.steps, first_loss=first, final_loss=last,
            val_loss=val_loss)
    print(f'training loss (mean of {window} steps): first {first:.3f}, last {last:.3f}; '
          f'held-out loss {val_loss:.3f}; saved to {args.workdir}')
  else:
    cm = CharModel.load(args.workdir)
  for temperature in args.temperature:
    print(f'--- temperature {temperature} ---\n{args.prompt}'
          f'{sample(cm, args.prompt, args.length, temperature, args.seed)}')


if __name__ == '__main__':
  main()
