"""Char-RNN (tools/sample_text.py): it learns a repetitive text and samples it back."""
import numpy as np

from tools import sample_text

TEXT = 'hello world\n' * 40


def test_learns_and_reproduces_a_repetitive_text(tmp_path):
  cm, losses, val_loss = sample_text.train(TEXT, 60, seq_len=24, batch_size=8,
                                           learning_rate=1e-2, hidden=32, embed_dim=16,
                                           log_every=0)
  assert cm.chars == '\n dehlorw'
  assert np.mean(losses[:5]) > 2.0  # About log(13): the 9 characters and 4 special tokens.
  assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5])
  assert val_loss < 0.2 * np.mean(losses[:5])  # The held-out tail repeats the same pattern.
  cm.save(str(tmp_path), steps=60)
  loaded = sample_text.CharModel.load(str(tmp_path))
  text = sample_text.sample(loaded, 'hello', 30, temperature=0.05)
  assert text == (' world\nhello world\nhello world\nhello')[:30]
  # At high temperature the samples still use only the alphabet (never PAD / START).
  assert set(sample_text.sample(loaded, 'wor', 50, temperature=3.0)) <= set(cm.chars + '?')
