"""Recurrent language models (CS231n lecture 10's recap): a vanilla RNN or an LSTM over tokens.

`CaptionDecoder` generates a token sequence conditioned on one feature vector (an image or a
region): as in Show and Tell and DenseCap, the feature, projected to the word-embedding size, is
the input of a step 0 before START (from a zero state); the state after it starts every
sequence. Training uses teacher forcing; inference decodes greedily or with beam search,
or samples with a temperature (the char-RNN of `tools/sample_text.py` is this decoder with a zero
feature). Every loop over time is a `nn.scan` (a `lax.scan` that carries the parameters), so a
sequence costs one compiled step body whatever its length.

Token convention (`ops.tokens`, which defines the ids): PAD = 0, START = 1, END = 2, UNK = 3,
words from 4. A target sequence is `w1 .. wk END PAD ..`; the decoder input is the target
shifted right behind START.

Cells (flax's own): 'rnn' is `nn.SimpleCell`, h_t = tanh(W_xh x_t + b + W_hh h_{t-1}); 'lstm' is
`nn.OptimizedLSTMCell` (input, forget, output gates and candidate g; c_t = f c_{t-1} + i g,
h_t = o tanh(c_t)).
"""
import jax
import jax.numpy as jnp
from flax import linen as nn

from models.layers import Dropout
from ops.tokens import END, PAD, START

CELLS = {'lstm': nn.OptimizedLSTMCell, 'rnn': nn.SimpleCell}
_NEG = -1e9  # Log-probability of excluded choices: finite, so sums never produce NaN.


def shift_right(tokens: jax.Array) -> jax.Array:
  """Target sequences [..., T] -> decoder inputs [..., T]: START, then the targets up to T-1."""
  start = jnp.full(tokens.shape[:-1] + (1,), START, tokens.dtype)
  return jnp.concatenate([start, tokens[..., :-1]], axis=-1)


def _scan_cell(module: 'CaptionDecoder', carry, inputs: jax.Array):
  """Runs the cell over time; inputs [N, T, E] -> (carry, outputs [N, T, hidden])."""
  def body(mdl, c, x):
    return mdl.rnn(c, x)

  scan = nn.scan(body, variable_broadcast='params', split_rngs={'params': False},
                 in_axes=1, out_axes=1)
  return scan(module, carry, inputs)


class CaptionDecoder(nn.Module):
  """A token decoder conditioned on features [N, D]; see the module docstring."""
  vocab_size: int  # V, including the four special tokens.
  embed_dim: int = 64
  hidden: int = 128
  cell: str = 'lstm'  # 'lstm' or 'rnn'.
  dropout_rate: float = 0.0  # On the word embeddings and on the hidden states before readout.
  axis_name: str | None = None  # The pmap axis, for Dropout.

  def setup(self):
    if self.cell not in CELLS:
      raise ValueError(f'unknown cell {self.cell!r}; valid: {", ".join(sorted(CELLS))}')
    self.rnn = CELLS[self.cell](features=self.hidden)
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.project = nn.Dense(self.embed_dim)  # The feature becomes the step-0 input.
    self.dropout = Dropout(self.dropout_rate, self.axis_name)
    self.readout = nn.Dense(self.vocab_size)

  def initial_carry(self, features: jax.Array):
    """The state after step 0, which reads the projected features [N, D] from a zero state."""
    h = jnp.zeros(features.shape[:-1] + (self.hidden,), jnp.float32)
    carry, _ = self.rnn((h, h) if self.cell == 'lstm' else h,
                        self.project(features.astype(jnp.float32)))
    return carry

  def __call__(self, features: jax.Array, tokens: jax.Array, *, train: bool) -> jax.Array:
    """Teacher forcing: features [N, D], target tokens int32 [N, T] -> logits float32 [N, T, V];
    logits[:, t] predicts tokens[:, t] from the targets before t."""
    inputs = self.dropout(self.embed(shift_right(tokens)), deterministic=not train)
    _, outputs = _scan_cell(self, self.initial_carry(features), inputs)
    return self.readout(self.dropout(outputs, deterministic=not train)).astype(jnp.float32)

  def _step(self, carry, tokens: jax.Array):
    """One step from input tokens [M] -> (carry, log-probabilities [M, V] over the words)."""
    carry, h = self.rnn(carry, self.embed(tokens))
    return carry, jax.nn.log_softmax(self.readout(h).astype(jnp.float32))

  def decode(self, features: jax.Array, *, max_len: int,
             beam_size: int = 1) -> tuple[jax.Array, jax.Array]:
    """features [N, D] -> (tokens int32 [N, max_len], log_prob float32 [N]).

    Greedy for beam_size 1, else beam search returning the most probable beam (no length
    normalisation). PAD and START are never emitted; after END every token is PAD and the
    log-probability stops accumulating.
    """
    if beam_size < 1:
      raise ValueError(f'beam_size must be >= 1 (1 = greedy), got {beam_size}')
    if beam_size == 1:
      return self.greedy(features, max_len=max_len)
    return self.beam_search(features, max_len=max_len, beam_size=beam_size)

  def greedy(self, features: jax.Array, *, max_len: int) -> tuple[jax.Array, jax.Array]:
    """The most probable next token at each step; same outputs as `decode`."""
    n = features.shape[0]

    def body(mdl, state, _):
      carry, token, done, total = state
      carry, logp = mdl._step(carry, token)
      token = jnp.argmax(_allowed(logp), -1).astype(jnp.int32)
      token = jnp.where(done, PAD, token)
      total = total + jnp.where(done, 0.0, jnp.take_along_axis(logp, token[:, None], 1)[:, 0])
      return (carry, token, done | (token == END), total), token

    state = (self.initial_carry(features), jnp.full((n,), START, jnp.int32),
             jnp.zeros((n,), bool), jnp.zeros((n,), jnp.float32))
    scan = nn.scan(body, variable_broadcast='params', split_rngs={'params': False},
                   length=max_len, out_axes=1)
    (_, _, _, total), tokens = scan(self, state, None)
    return tokens, total

  def beam_search(self, features: jax.Array, *, max_len: int,
                  beam_size: int) -> tuple[jax.Array, jax.Array]:
    """Keeps the `beam_size` most probable prefixes at each step; same outputs as `decode`."""
    n, v, k = features.shape[0], self.vocab_size, beam_size
    flat = lambda x: x.reshape((n * k,) + x.shape[2:])
    carry = jax.tree.map(lambda x: flat(jnp.repeat(x[:, None], k, 1)),
                         self.initial_carry(features))

    def body(mdl, state, t):
      carry, token, done, scores, history = state
      carry, logp = mdl._step(carry, flat(token))
      logp = _allowed(logp).reshape(n, k, v)
      # A finished beam has one continuation, PAD, that keeps its score unchanged.
      logp = jnp.where(done[..., None], jnp.where(jnp.arange(v) == PAD, 0.0, _NEG), logp)
      scores, best = jax.lax.top_k((scores[..., None] + logp).reshape(n, k * v), k)
      beam, token = best // v, (best % v).astype(jnp.int32)
      pick = lambda x: jnp.take_along_axis(x, beam.reshape(beam.shape + (1,) * (x.ndim - 2)), 1)
      carry = jax.tree.map(lambda x: flat(pick(x.reshape((n, k) + x.shape[1:]))), carry)
      history = pick(history).at[:, :, t].set(token)
      return (carry, token, pick(done) | (token == END), scores, history), None

    # Beams start identical: only beam 0 may expand at step 0, else the top k would repeat it.
    scores = jnp.tile(jnp.asarray([0.0] + [_NEG] * (k - 1), jnp.float32), (n, 1))
    state = (carry, jnp.full((n, k), START, jnp.int32), jnp.zeros((n, k), bool), scores,
             jnp.zeros((n, k, max_len), jnp.int32))
    scan = nn.scan(body, variable_broadcast='params', split_rngs={'params': False})
    (_, _, _, scores, history), _ = scan(self, state, jnp.arange(max_len))
    best = jnp.argmax(scores, -1)
    return (jnp.take_along_axis(history, best[:, None, None], 1)[:, 0],
            jnp.take_along_axis(scores, best[:, None], 1)[:, 0])

  def sample(self, features: jax.Array, prompt: jax.Array, *, length: int,
             temperature: float = 1.0) -> jax.Array:
    """Continues prompt tokens [N, P] by `length` tokens sampled from softmax(logits / T).

    Uses the rng stream 'sample'. Does not stop at END (language models trained on raw text
    never see it); PAD and START are never drawn.
    """
    inputs = shift_right(jnp.concatenate([prompt, prompt[:, -1:]], 1)) if prompt.shape[1] else (
        jnp.full((features.shape[0], 1), START, jnp.int32))
    carry = self.initial_carry(features)
    if inputs.shape[1] > 1:  # Read the prompt; its last token is the first sampling input.
      carry, _ = _scan_cell(self, carry, self.embed(inputs[:, :-1]))

    def body(mdl, state, key):
      carry, token = state
      carry, logp = mdl._step(carry, token)
      token = jax.random.categorical(key, _allowed(logp) / temperature).astype(jnp.int32)
      return (carry, token), token

    keys = jax.random.split(self.make_rng('sample'), length)
    scan = nn.scan(body, variable_broadcast='params', split_rngs={'params': False},
                   out_axes=1)
    _, tokens = scan(self, (carry, inputs[:, -1]), keys)
    return tokens


def _allowed(logp: jax.Array) -> jax.Array:
  """Excludes PAD and START from the choices (never a valid next word)."""
  return logp.at[..., PAD].set(_NEG).at[..., START].set(_NEG)
