"""torchvision's fcn_resnet50 and ssd300_vgg16, converted, give torchvision's outputs (no torch).

The fixtures are torchvision's outputs (tools/parity_fcn_ssd.py --fixture) for weights that
`tools.parity_weights.seeded_state_dict` regenerates here from the fixture's seed, on images
`make_images` draws from the same seed at two sizes (FCN: 56x80 and 80x64 at their own size; SSD:
120x160 and 150x100 stretched to 300x300, detections in each original frame).
"""
import os

import numpy as np
import pytest

from models.torchvision_fcn_ssd import check, convert, num_classes_of
from tools import parity_fcn_ssd, parity_weights

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def _load(arch: str):
  fixture = dict(np.load(os.path.join(FIXTURES, f'parity_{arch}.npz')))
  sizes = [tuple(s) for s in fixture['sizes']]
  ours = parity_fcn_ssd.run_ours(arch, int(fixture['seed']), int(fixture['num_classes']), sizes)
  return fixture, ours, len(sizes)


@pytest.fixture(scope='module')
def fcn():
  return _load('fcn_resnet50')


@pytest.fixture(scope='module')
def ssd():
  return _load('ssd300_vgg16')


def test_fcn_logits_equal_torchvision(fcn):
  fixture, ours, count = fcn
  for n in range(count):
    ref, got = fixture[f'logits_{n}'], ours[f'logits_{n}']
    assert got.shape == ref.shape  # Each image at its own size (56x80, 80x64).
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-4
    assert np.mean(got.argmax(-1) == ref.argmax(-1)) > 0.999


def test_ssd_detections_equal_torchvision(ssd):
  fixture, ours, count = ssd
  for n in range(count):
    assert len(ours[f'boxes_{n}']) == len(fixture[f'boxes_{n}']) == 200
    np.testing.assert_array_equal(ours[f'labels_{n}'], fixture[f'labels_{n}'])
    assert np.abs(ours[f'boxes_{n}'] - fixture[f'boxes_{n}']).max() < 0.05
    assert np.abs(ours[f'scores_{n}'] - fixture[f'scores_{n}']).max() < 1e-4
    # The seeded weights spread the scores, so the order really is compared.
    assert np.ptp(fixture[f'scores_{n}']) > 0.1


@pytest.mark.parametrize('arch', ['fcn_resnet101', 'ssd300_vgg16'])
def test_converted_tree_is_our_models(arch):
  state = parity_weights.seeded_state_dict(arch, 0, 3)
  assert num_classes_of(state, arch) == 3
  assert check(convert(state, arch), arch, 3) > 0


def test_converter_names_what_does_not_fit():
  state = parity_weights.seeded_state_dict('ssd300_vgg16', 0, 3)
  state['head.extra_layer.weight'] = np.zeros((3, 3), np.float32)
  with pytest.raises(ValueError, match=r'head\.extra_layer\.weight \(3, 3\)'):
    convert(state, 'ssd300_vgg16')
  state = parity_weights.seeded_state_dict('fcn_resnet50', 0, 3)
  state['classifier.0.weight'] = state['classifier.0.weight'][:8]
  with pytest.raises(ValueError, match='classifier_0/kernel'):
    check(convert(state, 'fcn_resnet50'), 'fcn_resnet50', 3)
  with pytest.raises(ValueError, match='valid: fcn_resnet101, fcn_resnet50, ssd300_vgg16'):
    convert(state, 'fcn_resnet18')
