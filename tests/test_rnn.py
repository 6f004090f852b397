"""Recurrent decoder: the scanned cells against a numpy loop, greedy / beam-search decoding, the
caption loss on hand-made cases."""
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from losses.captioning import caption_loss
from models.rnn import END, PAD, START, CaptionDecoder, shift_right

V, N, T = 9, 6, 5


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def _reference_logits(params, cell, features, tokens):
  """Teacher forcing written as a step-by-step numpy loop from the same parameters."""
  p = jax.tree.map(np.asarray, params)
  dense = lambda name, x: x @ p['rnn'][name]['kernel'] + p['rnn'][name].get('bias', 0)
  h = c = np.zeros((len(features), p['readout']['kernel'].shape[0]), np.float32)
  # Step 0 reads the projected features, then START and the targets but the last.
  inputs = [features @ p['project']['kernel'] + p['project']['bias']] + [
      p['embed']['embedding'][token] for token in np.asarray(shift_right(tokens)).T]
  logits = []
  for x in inputs:
    if cell == 'lstm':
      i, f, o = (_sigmoid(dense('i' + g, x) + dense('h' + g, h)) for g in 'ifo')
      g = np.tanh(dense('ig', x) + dense('hg', h))
      c = f * c + i * g
      h = o * np.tanh(c)
    else:
      h = np.tanh(dense('i', x) + dense('h', h))
    logits.append(h @ p['readout']['kernel'] + p['readout']['bias'])
  return np.stack(logits[1:], 1)  # Step 0's output predicts nothing.


@pytest.fixture(scope='module', params=['lstm', 'rnn'])
def decoder(request):
  """A random decoder of one cell type (its greedy captions end at various lengths, some not
  at all) and its jitted decoding."""
  model = CaptionDecoder(vocab_size=V, embed_dim=4, hidden=8, cell=request.param)
  features = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (N, 3)))
  tokens = jnp.zeros((N, T), jnp.int32)
  variables = model.init(jax.random.PRNGKey(1), features, tokens, train=False)

  @functools.partial(jax.jit, static_argnames=('beam_size', 'method'))
  def decode(beam_size, method=CaptionDecoder.decode):
    return model.apply(variables, features, max_len=T, beam_size=beam_size, method=method)

  return types.SimpleNamespace(model=model, variables=variables, features=features,
                               decode=decode)


def test_scanned_cell_equals_numpy_loop(decoder):
  model, variables, features = decoder.model, decoder.variables, decoder.features
  tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (N, T), 0, V))
  logits = model.apply(variables, features, tokens, train=False)
  assert logits.shape == (N, T, V) and logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, _reference_logits(variables['params'], model.cell, features,
                                                       tokens), rtol=1e-4, atol=1e-5)


def test_unknown_cell_lists_the_valid_ones():
  with pytest.raises(ValueError, match='lstm, rnn'):
    CaptionDecoder(vocab_size=V, cell='gru').init(jax.random.PRNGKey(0), jnp.zeros((1, 3)),
                                                  jnp.zeros((1, T), jnp.int32), train=False)


def test_beam_size_below_one_is_refused():
  model = CaptionDecoder(vocab_size=V)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros((1, T), jnp.int32),
                         train=False)
  with pytest.raises(ValueError, match='beam_size must be >= 1'):
    model.apply(variables, jnp.zeros((1, 3)), max_len=T, beam_size=0,
                method=CaptionDecoder.decode)


def _sequence_log_prob(model, variables, features, tokens):
  """Sum of teacher-forced log-probabilities of the tokens up to and including END."""
  logp = jax.nn.log_softmax(model.apply(variables, features, tokens, train=False))
  picked = np.take_along_axis(np.asarray(logp), np.asarray(tokens)[..., None], -1)[..., 0]
  return np.sum(picked * (np.asarray(tokens) != PAD), -1)


def test_greedy_stops_at_end_and_scores_its_tokens(decoder):
  model, variables, features = decoder.model, decoder.variables, decoder.features
  tokens, log_prob = map(np.asarray, decoder.decode(1))
  assert tokens.shape == (N, T) and tokens.dtype == np.int32
  ended = 0
  for row in tokens:
    stop = np.flatnonzero(row == END)
    length = stop[0] + 1 if len(stop) else T
    ended += bool(len(stop))
    assert np.all(row[length:] == PAD)
    assert np.all((row[:length] != PAD) & (row[:length] != START))
  assert 0 < ended  # Some sequences finish early: the PAD tail above was really tested.
  np.testing.assert_allclose(log_prob, _sequence_log_prob(model, variables, features, tokens),
                             rtol=1e-5, atol=1e-5)
  # Greedy: each token is the most probable allowed one given the ones before.
  logits = np.array(model.apply(variables, features, tokens, train=False))
  logits[..., [PAD, START]] = -np.inf
  before_end = np.cumsum(tokens == END, 1) - (tokens == END) == 0
  np.testing.assert_array_equal(np.argmax(logits, -1)[before_end], tokens[before_end])


def test_beam_one_equals_greedy(decoder):
  # decode() runs greedy() for beam 1: call the search itself.
  greedy, beam = decoder.decode(1), decoder.decode(1, CaptionDecoder.beam_search)
  np.testing.assert_array_equal(beam[0], greedy[0])
  np.testing.assert_allclose(beam[1], greedy[1], rtol=1e-6)


def test_beam_search_finds_likelier_sequences(decoder):
  model, variables, features = decoder.model, decoder.variables, decoder.features
  _, greedy = map(np.asarray, decoder.decode(1))
  tokens, log_prob = map(np.asarray, decoder.decode(4))
  assert np.all(log_prob >= greedy - 1e-5)
  assert np.any(log_prob > greedy + 1e-3)  # The search does better somewhere.
  np.testing.assert_allclose(log_prob, _sequence_log_prob(model, variables, features, tokens),
                             rtol=1e-5, atol=1e-5)
  for row in tokens:  # Finished beams are padded after their END.
    stop = np.flatnonzero(row == END)
    if len(stop):
      assert np.all(row[stop[0] + 1:] == PAD)


def test_caption_loss_hand_made():
  # Two sequences of T=3 over V=5: 'w4 END PAD' and 'w5 w4 END'.
  targets = jnp.array([[4, END, PAD], [4, 4, END]])
  logits = jnp.zeros((2, 3, 5)).at[0, 0, 4].set(2.0).at[1, :, 4].set(1.0)
  ce_uniform, ce_peak = np.log(5), np.log(4 + np.exp(2)) - 2
  ce_flat, ce_top = np.log(4 + np.e), np.log(4 + np.e) - 1
  loss, aux = caption_loss(logits, targets)
  # Counted: (0,0) peaked and right, (0,1) uniform, (1,0) (1,1) right, (1,2) END but peak at 4.
  expected = (ce_peak + ce_uniform + 2 * ce_top + ce_flat) / 5
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  assert aux['caption_loss'] == loss
  # The argmax of a uniform row is 0 (wrong); rows peaked at 4 are right except (1, 2).
  np.testing.assert_allclose(aux['token_accuracy'], 3 / 5)
  # Leading dims [B, R] with per-region weights: region (0, 1) is unused and counts for nothing.
  loss_w, aux_w = caption_loss(logits[None], targets[None], jnp.array([[1.0, 0.0]]))
  np.testing.assert_allclose(loss_w, (ce_peak + ce_uniform) / 2, rtol=1e-6)
  np.testing.assert_allclose(aux_w['token_accuracy'], 1 / 2)
  empty, aux_e = caption_loss(logits, jnp.zeros_like(targets))
  assert float(empty) == 0 and float(aux_e['token_accuracy']) == 0
