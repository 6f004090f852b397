"""Dense captioning (Johnson, Karpathy, Fei-Fei, CVPR 2016): regions, each described in words.

Regions are class-agnostic (the model's one foreground class is 'region'; the dataset's classes
are not used). The model selects its detections and captions them itself; evaluation is the
DenseCap mAP (`metrics/densecap.py`) plus box AP of the regions, and the same mAP for a baseline
that keeps the model's boxes and scores but writes the training set's most frequent phrase on
every box: the part of the mAP the captions earn.
"""
import collections
import functools

import numpy as np

import data
from data.source import DecodedSource
from losses.densecap import densecap_loss
from metrics.densecap import DenseCapMetric
from tasks import drawing
from tasks.detection import DetectionEvaluator, DetectionTask

REGION_CLASSES = ['background', 'region']
NUM_SAMPLES = 20  # Images whose phrases metrics.json lists under 'samples'.


class DenseCapTask(DetectionTask):
  name = 'dense_captioning'
  losses = {'densecap': densecap_loss}

  def __init__(self, config):
    # Datasets whose vocabulary comes from their training phrases (visual_genome) know it only
    # once prepared, and dataset_info (in super().__init__) reads it.
    data.ensure_prepared(config.data)
    if data.dataset_info(config.data)['vocab'] is None:  # Before the model needs its size.
      raise ValueError(f'Dataset {config.data.name}/{config.data.variant} has no region phrases; '
                       'dense captioning needs shapes/captions (or captions_small) or '
                       'visual_genome.')
    super().__init__(config)

  @property
  def class_names(self) -> list[str]:
    return REGION_CLASSES

  @property
  def vocab(self):
    return self.info['vocab']

  def model_kwargs(self):
    return {**super().model_kwargs(), 'vocab_size': len(self.info['vocab']),
            'max_caption_len': self.info['max_caption_len'], **self.selection_kwargs()}

  def model_inputs(self, batch):
    args, kwargs = super().model_inputs(batch)
    return args, {**kwargs, 'gt_labels': regions(batch)}

  def postprocess(self, outputs, batch):
    return dict(outputs['detections'])

  @functools.cached_property
  def baseline_phrase(self) -> str:
    """The training split's most frequent phrase, read once per task (every evaluation uses it)."""
    return most_frequent_phrase(self.config.data, self.vocab)

  def make_evaluator(self):
    return DenseCapEvaluator(self.vocab, self.baseline_phrase)

  def draw_example(self, batch, predictions, i, path):
    """ground truth | prediction: numbered boxes and their phrases."""
    rows = max(batch['boxes'].shape[1], predictions['boxes'].shape[1])
    image = drawing.to_uint8(batch['image'][i])
    gt = batch['valid'][i]
    shown = predictions['valid'][i] & (predictions['scores'][i] >= self.config.detect.show_score)
    truth = drawing.draw_captions(
        image, batch['boxes'][i][gt], [self.vocab.decode(c) for c in batch['captions'][i][gt]],
        rows=rows)
    predicted = drawing.draw_captions(
        image, predictions['boxes'][i][shown],
        [self.vocab.decode(c) for c in predictions['captions'][i][shown]],
        predictions['scores'][i][shown], rows=rows)
    drawing.save_panel([truth, predicted], ['ground truth', 'prediction'], path, scale=1)


def regions(batch) -> np.ndarray:
  """The ground-truth labels of class-agnostic regions: 1 for every real box."""
  return batch['valid'].astype(np.int32)


def most_frequent_phrase(data_config, vocab) -> str:
  """The training split's most frequent region phrase (the captions-free baseline's)."""
  source = DecodedSource(data_config, data_config.get('train_split', 'train'))
  counts = collections.Counter()
  for index in range(len(source)):  # As the model sees them: cleaned, unknown words as <unk>.
    counts.update(vocab.decode(vocab.encode(p)) for p in source.phrases(index))
  return counts.most_common(1)[0][0] if counts else ''


class DenseCapEvaluator(DetectionEvaluator):
  """Box AP of the regions (the detection task's), 'densecap_map' with 'detection_map' and
  'meteor_matched' (metrics/densecap.py), and 'baseline_densecap_map' (and its strict variant):
  the same boxes, each captioned with `baseline_phrase`. 'samples': the first images' true
  phrases and their detections' (caption, score), best first."""

  def __init__(self, vocab, baseline_phrase: str):
    super().__init__(REGION_CLASSES)
    self.vocab = vocab
    self.baseline_phrase = baseline_phrase
    self.densecap = DenseCapMetric()
    self.baseline = DenseCapMetric()
    self.samples = []  # The first images' true and predicted phrases, for people to read.

  def add(self, batch, predictions):
    super().add(dict(batch, labels=regions(batch)), predictions)

  def add_image(self, image_id: int, batch, predictions, i: int):
    super().add_image(image_id, batch, predictions, i)
    gt, det = batch['valid'][i], predictions['valid'][i]
    phrases = [self.vocab.decode(c) for c in batch['captions'][i][gt]]
    boxes, scores = predictions['boxes'][i][det], predictions['scores'][i][det]
    self.densecap.add(batch['boxes'][i][gt], phrases, boxes, scores,
                      [self.vocab.decode(c) for c in predictions['captions'][i][det]])
    self.baseline.add(batch['boxes'][i][gt], phrases, boxes, scores,
                      [self.baseline_phrase] * len(boxes))
    if len(self.samples) < NUM_SAMPLES:
      predicted = [self.vocab.decode(c) for c in predictions['captions'][i][det]]
      self.samples.append({'image': image_id, 'truth': phrases, 'predicted': [
          [text, round(float(s), 3)] for text, s in zip(predicted, scores, strict=True)]})

  def result(self) -> dict:
    out = super().result()
    out.update(self.densecap.result())
    baseline = self.baseline.result()
    out['baseline_densecap_map'] = baseline['densecap_map']
    out['baseline_densecap_map_strict'] = baseline['densecap_map_strict']
    out['baseline_phrase'] = self.baseline_phrase
    out['samples'] = self.samples
    return out
