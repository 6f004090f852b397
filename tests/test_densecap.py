"""Dense captioning: Shapes phrases, the DenseCap metric on hand-made cases, the model's outputs."""
import functools

import jax
import numpy as np
import pytest

import tasks
from configs import loader
from data import augment, captions, shapes
from metrics.densecap import DenseCapMetric, interpolated_ap, merge_regions
from tools.bench import synthetic_batch
from training.optim import make_optimizer
from training.state import init_state

CAPTIONS = next(c for c in shapes.Shapes.BUILDER_CONFIGS if c.name == 'captions_small')
VOCAB = captions.shapes_vocabulary(shapes.CLASS_NAMES[1:])


def test_phrases_describe_the_scene():
  for index in range(20):
    ex = shapes.render(CAPTIONS, 'train', index)
    assert len(ex['phrases']) == len(ex['boxes'])
    for k, phrase in enumerate(ex['phrases']):
      words = phrase.split()
      assert words[3] == shapes.CLASS_NAMES[ex['labels'][k]]  # 'a small red circle ...'
      assert words[1] in captions.SIZES and words[2] in captions.COLOURS
      # The relation names where the object's centre lies relative to the named neighbour's.
      if len(ex['boxes']) > 1:
        centres = (ex['boxes'][:, :2] + ex['boxes'][:, 2:]) / 2
        dist = np.linalg.norm(centres - centres[k], axis=1)
        dist[k] = np.inf
        dy, dx = centres[k] - centres[np.argmin(dist)]
        expect = (('left' if dx < 0 else 'right') if abs(dx) >= abs(dy)
                  else ('above' if dy < 0 else 'below'))
        assert words[4] == expect, (phrase, dy, dx)
    assert np.all(VOCAB.encode_all(ex['phrases']) != captions.UNK)


def test_vocabulary_round_trip_and_flip():
  phrase = 'a small red circle left of a large blue square'
  ids = VOCAB.encode(phrase)
  assert ids.shape == (VOCAB.max_len,) and ids[len(phrase.split())] == captions.END
  assert VOCAB.decode(ids) == phrase
  assert VOCAB.decode(VOCAB.encode('a purple circle')) == 'a <unk> circle'
  flipped = VOCAB.flip_permutation()[ids]
  assert VOCAB.decode(flipped) == 'a small red circle right of a large blue square'


def test_horizontal_flip_swaps_left_and_right():
  ex = shapes.render(CAPTIONS, 'train', 0)
  ex = dict(ex, image=ex['image'].astype(np.float32), captions=VOCAB.encode_all(['a red circle '
                                                                                 'left of a star']),
            boxes=ex['boxes'][:1], labels=ex['labels'][:1],
            instance_ids=(ex['instance_ids'] == 1).astype(np.uint8),
            caption_flip=VOCAB.flip_permutation())
  out = augment.transform(ex, flip=True, out_hw=(64, 64), oy=0, ox=0, crop_hw=(64, 64))
  assert VOCAB.decode(out['captions'][0]) == 'a red circle right of a star'


def test_metric_perfect_and_wrong_captions():
  gt = [[0, 0, 10, 10], [20, 20, 40, 40]]
  phrases = ['a small red circle', 'a large blue square']
  perfect = DenseCapMetric()
  perfect.add(gt, phrases, gt, [0.9, 0.8], phrases)
  result = perfect.result()
  assert result['densecap_map'] == pytest.approx(1.0) and result['detection_map'] == 1.0
  # Right boxes, unrelated captions: boxes-only AP stays 1, captions fail every METEOR >= 0.05.
  wrong = DenseCapMetric()
  wrong.add(gt, phrases, gt, [0.9, 0.8], ['below of and', 'of and below'])
  table = np.asarray(wrong.result()['ap_table'])
  assert np.allclose(table[:, 0], 1.0) and np.allclose(table[:, 2:], 0.0)
  assert wrong.result()['densecap_map'] == pytest.approx(table.mean())


def test_metric_duplicates_misses_and_iou_thresholds():
  metric = DenseCapMetric()
  # Second detection duplicates the first region: a false positive. Region 2 is missed.
  metric.add([[0, 0, 10, 10], [30, 30, 40, 40]], ['a red circle', 'a blue star'],
             [[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], ['a red circle', 'a red circle'])
  result = metric.result()
  # Recall reaches 0.5 at precision 1 (101-point: 51 points of 1, the rest 0).
  assert result['detection_map'] == pytest.approx(51 / 101)
  # A box of IoU 0.5 with its region counts at thresholds 0.3-0.5, not at 0.6 and 0.7.
  shifted = DenseCapMetric()
  shifted.add([[0, 0, 10, 30]], ['a star'], [[0, 0, 10, 15]], [1.0], ['a star'])
  boxes_only = np.asarray(shifted.result()['ap_table'])[:, 0]
  np.testing.assert_allclose(boxes_only, [1, 1, 1, 0, 0])


def test_interpolated_ap_and_region_merging():
  # Hits at ranks 1 and 3 of 2 positives: precision 1 up to recall 0.5, 2/3 up to recall 1.
  ap = interpolated_ap(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), 2)
  assert ap == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)
  boxes, refs = merge_regions(np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30]]),
                              ['a', 'b', 'c'])
  np.testing.assert_allclose(boxes, [[0, 0, 10, 10.5], [20, 20, 30, 30]])
  assert refs == [['a', 'b'], ['c']]


def test_dataset_without_phrases_is_refused(tfds_dir):
  del tfds_dir
  config = loader.load('configs/densecap/densecap_shapes.py:runlocal')
  config.data.variant = 'small'
  with pytest.raises(ValueError, match='has no region phrases'):
    tasks.get_task(config)


@pytest.fixture(scope='module')
def densecap(tfds_dir):
  del tfds_dir  # The task reads the dataset info (no data needed for synthetic batches).
  config = loader.load('configs/densecap/densecap_shapes.py:runlocal')
  task = tasks.get_task(config)
  batch = synthetic_batch(task, 2)
  state = init_state(task, task.model, make_optimizer(config.optimizer, 10),
                     jax.random.PRNGKey(0), batch)
  return task, state, batch


def test_training_targets_are_the_matched_regions_phrases(densecap):
  task, state, batch = densecap
  args, kwargs = task.model_inputs(batch)
  apply = jax.jit(functools.partial(task.model.apply, train=True, mutable=['batch_stats']))
  out, _ = apply(state.variables, *args, rngs={'sample': jax.random.PRNGKey(1)}, **kwargs)
  rois = out['roi_targets']
  fg = out['caption_targets']['valid']
  assert fg.any()
  num_fg = fg.shape[1]
  matched = np.asarray(rois['matched'][:, :num_fg])
  expect = np.take_along_axis(batch['captions'], matched[..., None], axis=1)
  np.testing.assert_array_equal(np.asarray(out['caption_targets']['tokens']), expect)
  assert out['caption_logits'].shape == (*expect.shape, len(task.vocab))


def test_inference_captions_every_detection(densecap):
  task, state, batch = densecap
  args, kwargs = task.model_inputs(batch)
  out = jax.jit(functools.partial(task.model.apply, train=False))(state.variables, *args, **kwargs)
  det = task.postprocess(out, batch)
  d = task.config.detect.max_detections
  assert det['captions'].shape == (2, d, task.info['max_caption_len'])
  assert det['boxes'].shape == (2, d, 4) and det['caption_log_prob'].shape == (2, d)
  assert np.all(np.asarray(det['caption_log_prob']) <= 0)


def test_evaluator_scores_truth_above_the_most_frequent_phrase(densecap, tmp_path):
  task, _, batch = densecap
  batch = dict(batch, captions=np.stack([VOCAB.encode_all(
      ['a small red circle', 'a large blue square left of a small red circle',
       'a small green star', 'a small red circle'])] * 2))
  truth = dict(boxes=batch['boxes'], scores=batch['valid'].astype(np.float32),
               valid=batch['valid'], labels=batch['valid'].astype(np.int32),
               captions=batch['captions'])
  evaluator = task.make_evaluator()
  assert evaluator.baseline_phrase.startswith('a ')  # From the captions_small training split.
  evaluator.baseline_phrase = 'a small red circle'
  evaluator.add(batch, truth)
  result = evaluator.result()
  assert result['densecap_map'] == pytest.approx(1.0) and result['AP50'] == pytest.approx(1.0)
  assert result['detection_map'] == result['densecap_map_strict'] == pytest.approx(1.0)
  # METEOR of the baseline phrase vs the true ones: 1.0, 0.42, 0.47; the paper's thresholds
  # (<= 0.25) accept all three, the strict ones (>= 0.5) only the first region.
  assert result['baseline_densecap_map'] == pytest.approx(1.0)
  assert result['baseline_densecap_map_strict'] == pytest.approx(
      np.mean(evaluator.baseline.ap_table([0.5])))
  assert result['baseline_densecap_map_strict'] < 0.6
  assert result['samples'][0]['truth'] == [c[0] for c in result['samples'][0]['predicted']] == [
      'a small red circle', 'a large blue square left of a small red circle', 'a small green star']
  assert task.visualize(batch, truth, str(tmp_path), max_images=1) == 1
  assert (tmp_path / 'overlay_000.png').exists()
