"""Image captioning: caption metrics on hand-made cases, the captioner's outputs, one train + eval
run on Shapes captions."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

import train
from configs import loader
from metrics.captioning import caption_metrics
from models.captioner import ImageCaptioner
from models.rnn import END, PAD
from tests.workdir_checks import EVAL_SPLIT, assert_first_step_trained


def _meteor(matches, hyp_len, ref_len, chunks=1):
  """nltk's METEOR with its defaults (alpha 0.9, beta 3, gamma 0.5)."""
  p, r = matches / hyp_len, matches / ref_len
  return p * r / (0.9 * p + 0.1 * r) * (1 - 0.5 * (chunks / matches) ** 3)


def test_metrics_hand_made():
  same = caption_metrics(['a red circle and'], [['a red circle and']])
  assert same['bleu4'] == 1.0 and same['exact_match'] == 1.0 and same['num_images'] == 1
  np.testing.assert_allclose(same['meteor'], _meteor(4, 4, 4))
  # Every n-gram of the hypothesis is in the reference, which is longer: BLEU is the brevity
  # penalty exp(1 - 7 / 5); METEOR has recall 5/7 and one chunk.
  short = caption_metrics(['a red circle and a', 'a small blue star'],
                          [['a red circle and a blue square'], ['a star', 'a small blue star']])
  np.testing.assert_allclose(short['meteor'], (_meteor(5, 5, 7) + _meteor(4, 4, 4)) / 2)
  assert short['exact_match'] == 0.5
  # Corpus BLEU pools the counts (9/9, 7/7, 5/5, 3/3 n-grams match) and the lengths: 9 words
  # against the closest references' 7 + 4.
  np.testing.assert_allclose(short['bleu4'], np.exp(1 - 11 / 9))


def test_captioner_decodes_in_inference_mode():
  model = ImageCaptioner(vocab_size=7, embed_dim=4, hidden=8, beam_size=2)
  images = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3))
  captions = jnp.array([[4, 5, END, PAD, PAD], [6, END, PAD, PAD, PAD]])
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(1), images, captions)
  assert 'backbone' in variables['params'] and 'decoder' in variables['params']
  out = jax.jit(functools.partial(model.apply, train=False))(variables, images, captions)
  assert out['logits'].shape == (2, 5, 7) and out['tokens'].shape == (2, 5)
  decode = functools.partial(model.apply, max_len=5, beam_size=2, method=ImageCaptioner.decode)
  tokens, log_prob = jax.jit(decode)(variables, images)
  np.testing.assert_array_equal(tokens, out['tokens'])
  np.testing.assert_allclose(log_prob, out['log_prob'], rtol=1e-6)


def test_train_and_evaluate(tfds_dir, tmp_path):
  config = loader.load('configs/caption/captioner_shapes.py:runlocal')
  config.data.data_dir, config.data.eval_split = tfds_dir, EVAL_SPLIT
  state, metrics = train.train_and_evaluate(config, str(tmp_path))
  assert_first_step_trained(str(tmp_path))
  assert int(state.step) == config.total_steps
  assert metrics['num_images'] == 16
  assert 0 <= metrics['exact_match'] <= 1 and 0 <= metrics['bleu4'] <= 1
  assert 0 <= metrics['meteor'] <= 1
  assert os.path.exists(tmp_path / 'eval' / 'overlay_001.png')
