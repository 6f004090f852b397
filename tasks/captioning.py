"""Image captioning: one caption per image from a CNN encoder and an LSTM decoder.

Trains with the caption cross-entropy (teacher forcing) on the batches' `caption` [B, T] (the Shapes
`captions` variants); evaluates the model's own decoded captions (greedy or beam search) with
corpus BLEU-4, METEOR and the exact-match rate (`metrics/captioning.py`). Overlays show the image
with the predicted and the true caption.
"""
import textwrap

import numpy as np
from PIL import Image, ImageDraw

from losses.captioning import caption_loss
from metrics.captioning import caption_metrics
from tasks import drawing
from tasks.base import Task, freeze_backbone


class CaptioningTask(Task):
  name = 'captioning'

  def setup(self):
    self.vocab = self.info['vocab']
    if self.vocab is None:
      data_config = self.config.data
      raise ValueError(f'dataset {data_config.name!r} variant {data_config.get("variant")!r} '
                       "has no captions; use e.g. Shapes variant 'captions'")

  def model_kwargs(self):
    return {'vocab_size': len(self.vocab), 'frozen_backbone': freeze_backbone(self.config)}

  def model_inputs(self, batch):
    return (batch['image'], batch['caption']), {}

  def loss(self, outputs, batch):
    return caption_loss(outputs['logits'], batch['caption'])

  def postprocess(self, outputs, batch):
    del batch
    return {'tokens': outputs['tokens'], 'log_prob': outputs['log_prob']}

  def make_evaluator(self):
    return CaptioningEvaluator(self.vocab)

  def draw_example(self, batch, predictions, i, path):
    """The image with its predicted and true caption under it."""
    tile = caption_tile(drawing.to_uint8(batch['image'][i]), [
        ('predicted', self.vocab.decode(predictions['tokens'][i])),
        ('true', self.vocab.decode(batch['caption'][i]))])
    Image.fromarray(tile).save(path)


def caption_tile(image: np.ndarray, captions: list[tuple[str, str]], *, scale: int = 4,
                 chars_per_line: int = 42) -> np.ndarray:
  """The image upscaled by `scale` above its (label, caption) lines, wrapped to the width."""
  image = drawing.upscale(image, scale)
  lines = [(label if j == 0 else '', text) for label, caption in captions
           for j, text in enumerate(textwrap.wrap(caption, chars_per_line) or [''])]
  line_h, label_w = 13, 62
  canvas = Image.new('RGB', (image.shape[1], image.shape[0] + line_h * len(lines) + 6),
                     (255, 255, 255))
  canvas.paste(Image.fromarray(image), (0, 0))
  draw = ImageDraw.Draw(canvas)
  for k, (label, text) in enumerate(lines):
    y = image.shape[0] + 3 + line_h * k
    draw.text((3, y), label, fill=(120, 120, 120))
    draw.text((label_w, y), text, fill=(0, 0, 0))
  return np.asarray(canvas)


class CaptioningEvaluator:
  """Collects decoded and true captions (as text) of every real image; metrics at the end."""

  def __init__(self, vocab):
    self.vocab = vocab
    self.hypotheses, self.references = [], []

  def add(self, batch, predictions):
    for i in np.flatnonzero(np.asarray(batch['example_valid'])):
      self.hypotheses.append(self.vocab.decode(predictions['tokens'][i]))
      self.references.append([self.vocab.decode(batch['caption'][i])])

  def result(self) -> dict:
    return caption_metrics(self.hypotheses, self.references)
