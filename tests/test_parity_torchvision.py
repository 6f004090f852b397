"""torchvision's COCO Mask / Keypoint R-CNN, converted, give torchvision's outputs.

The fixtures (tests/fixtures/parity_*.npz) hold torchvision's detections on tools/parity.py's
three generated images (a photo-like 640x480 one and two other aspect ratios), each run alone as
torchvision's COCO evaluation does, written by `python -m tools.parity --arch ARCH --min-size 192
--max-size 320 --proposals 200 --detections 20 --fixture ...` with seeded weights; here the
weights are regenerated from the same numpy seed and converted with the library's converter, no
torch involved, and our model runs the three images as one batch in eval's square canvas, larger
than each image's padded size (`model.per_image_canvas`). Faster R-CNN's outputs are tested
through eval.py and predict in tests/test_reference_eval.py. Also: the converter's error lists,
the converted checkpoint directory, and the pieces (anchors, frozen batch norm, frozen stages).
"""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import loader
from models import torchvision_detection
from models.faster_rcnn import FasterRCNN
from models.layers import FrozenBatchNorm, batch_norm
from models.options import resolve
from models.roi_heads import RoIOptions
from ops.anchors import torchvision_anchors, torchvision_cell_anchors
from tools import parity
from training import model_init
from training.checkpoint import Checkpointer
from training.optim import _module_mask

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def _fixture(arch):
  arrays = dict(np.load(os.path.join(FIXTURES, f'parity_{arch}.npz')))
  return arrays, parity.Settings(*(int(arrays[k]) for k in parity.Settings._fields))


@pytest.mark.parametrize('arch,devices', (('maskrcnn_resnet50_fpn', 1),
                                          ('keypointrcnn_resnet50_fpn', None)))
def test_outputs_equal_torchvision(arch, devices, monkeypatch):
  if devices:  # NMS one image at a time (`ops.nms.map_images`); the suite simulates 4 devices.
    monkeypatch.setattr(jax, 'device_count', lambda: devices)
  fixture, run = _fixture(arch)
  images = parity.make_images(run.seed)
  assert [parity.image_digest(i) for i in images] == list(fixture['digests']), (
      'this numpy draws other images than the one that wrote the fixture; rerun tools/parity.py')
  ours, _ = parity.run_ours(arch, run)
  for n, det in enumerate(ours):
    boxes = fixture[f'boxes_{n}']
    assert len(boxes) > 10 and len(det['boxes']) == len(boxes)
    np.testing.assert_array_equal(det['labels'], fixture[f'labels_{n}'])  # Labels and order.
    np.testing.assert_allclose(det['boxes'], boxes, rtol=0, atol=0.05)
    np.testing.assert_allclose(det['scores'], fixture[f'scores_{n}'], rtol=0, atol=1e-4)
    if f'masks_{n}' in fixture:
      theirs = np.unpackbits(fixture[f'masks_{n}'], axis=-1, count=images[n].shape[1]).astype(bool)
      assert theirs.any((1, 2)).all()
      assert parity.mask_iou(theirs, det['pasted'][:len(theirs)]).min() > 0.99
    if f'keypoints_{n}' in fixture:
      theirs = fixture[f'keypoints_{n}']
      assert np.abs(det['keypoints'][..., :2] - theirs[..., :2]).max() < 0.5
      np.testing.assert_allclose(det['keypoints'][..., 2], theirs[..., 2], rtol=0, atol=1e-3)
  assert len({int(label) for det in ours for label in det['labels']}) > 1 or arch.startswith('key')


def test_converter_lists_what_does_not_map():
  state = {k: np.zeros(shape, np.float32)
           for k, shape in parity.state_dict_shapes('fasterrcnn_resnet50_fpn').items()}
  with pytest.raises(ValueError, match=r'2 torchvision keys .*extra\.weight \(3,\).*'
                                       r'roi_heads\.box_head\.fc9\.bias'):
    torchvision_detection.convert({**state, 'extra.weight': np.zeros(3, np.float32),
                                   'roi_heads.box_head.fc9.bias': np.zeros(2, np.float32)})
  variables = torchvision_detection.convert(state)
  variables['params']['rpn']['objectness']['bias'] = np.zeros(5, np.float32)
  del variables['params']['fpn']['output4']
  # Exactly these 3 (kernel and bias of output4, the bias): every other array fits.
  with pytest.raises(ValueError, match=r'3 arrays do not fit.*missing params/fpn/output4/bias.*'
                                       r'params/rpn/objectness/bias: \(5,\) != our \(3,\)'):
    torchvision_detection.check(variables, 'fasterrcnn_resnet50_fpn')


def test_converted_checkpoint_restores_whole_or_falls_back(tmp_path):
  variables = {'params': {'backbone': {'w': np.ones((2, 3), np.float32)},
                          'head': {'b': np.arange(4, dtype=np.float32)}},
               'batch_stats': {'backbone': {'mean': np.zeros(3, np.float32)}}}
  model_init.write_checkpoint(variables, str(tmp_path))
  restored = Checkpointer(str(tmp_path / 'checkpoints')).restore_arrays()
  np.testing.assert_array_equal(restored['params']['head']['b'], np.arange(4))

  @dataclasses.dataclass
  class State:  # The fields of training.state's TrainState that restore_whole touches.
    params: dict
    batch_stats: dict
    opt_state: object = None
    tx: object = None

    def replace(self, **kw):
      return dataclasses.replace(self, **kw)

  zeros = jax.tree.map(np.zeros_like, variables)
  state = State(zeros['params'], zeros['batch_stats'], tx=type('tx', (), {'init': staticmethod(
      lambda p: 'fresh')}))
  whole = model_init.restore_whole(state, str(tmp_path))
  np.testing.assert_array_equal(whole.params['head']['b'], np.arange(4))
  assert whole.opt_state == 'fresh'
  other = State({'backbone': zeros['params']['backbone']}, zeros['batch_stats'])
  assert model_init.restore_whole(other, str(tmp_path)) is None  # Another model: backbone only.


def test_torchvision_anchor_placement():
  # torchvision's rounded cell anchors (ratios outer): size 32, ratio 0.5 -> w 45.25, h 22.63.
  np.testing.assert_array_equal(torchvision_cell_anchors((32.0,), (0.5, 1.0, 2.0)),
                                [[-11, -23, 11, 23], [-16, -16, 16, 16], [-23, -11, 23, 11]])
  # An 800x1088 canvas: P6 has 13x17 cells, so its stride is 61 down and 64 across.
  anchors = torchvision_anchors((800, 1088), [(25, 34), (13, 17)], [(256.0,), (512.0,)], (1.0,))
  p6 = anchors[25 * 34:].reshape(13, 17, 4)
  np.testing.assert_array_equal(p6[1, 1], [61 - 256, 64 - 256, 61 + 256, 64 + 256])
  model = FasterRCNN(num_classes=3, fpn_strides=(4,), rpn={'anchor_sizes': (8.0, 16.0),
                                                           'anchor_placement': 'torchvision'})
  with pytest.raises(ValueError, match='needs the canvas'):
    model.anchors({4: (2, 2), 8: (1, 1)})
  # Each image's own padded size: an 800x1344 canvas holding a 600x1333 image has torchvision's
  # anchors of a 608x1344 image in its first cells, and no others.
  model = FasterRCNN(num_classes=3, fpn_strides=(4, 8, 16, 32), rpn={
      'anchor_sizes': (32.0, 64.0, 128.0, 256.0, 512.0), 'anchor_placement': 'torchvision',
      'anchor_canvas': 'image'})
  cells = lambda hw: {s: (-(-hw[0] // s), -(-hw[1] // s)) for s in (4, 8, 16, 32, 64)}
  per_image, valid = model.image_anchors(cells((800, 1344)), jnp.asarray([[600, 1333]]))
  own = cells((608, 1344))
  np.testing.assert_array_equal(per_image[0][valid[0]], torchvision_anchors(
      (608, 1344), [own[s] for s in sorted(own)], [(s,) for s in model.rpn.anchor_sizes],
      model.rpn.anchor_ratios))
  with pytest.raises(ValueError, match=r'unknown config.model.roi field\(s\) sise; valid: '):
    resolve(RoIOptions, {'sise': 7}, 'roi')


def test_frozen_batch_norm_and_frozen_stages():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  bn = batch_norm(train=True, axis_name=None, frozen=True)()
  variables = {'params': {'scale': jnp.asarray([1.0, 2.0, 0.5]), 'bias': jnp.ones(3)},
               'batch_stats': {'mean': jnp.asarray([0.1, -0.2, 0.3]), 'var': jnp.full(3, 2.0)}}
  assert isinstance(bn, FrozenBatchNorm)
  want = batch_norm(train=False, axis_name=None)().apply(variables, x)
  np.testing.assert_allclose(bn.apply(variables, x), want, atol=1e-6)
  grads = jax.grad(lambda v: bn.apply(v, x).sum())(variables)
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads))
  stages = model_init.frozen_backbone_stages(
      type('C', (), {'model': {'trainable_layers': 3}})())
  assert stages == ('backbone/conv1', 'backbone/bn1', 'backbone/layer1_')
  params = {'backbone': {'conv1': 0, 'layer1_0': 0, 'layer2_0': 0}, 'rpn': {'conv': 0}}
  assert _module_mask(params, stages) == {
      'backbone': {'conv1': True, 'layer1_0': True, 'layer2_0': False}, 'rpn': {'conv': False}}
  assert _module_mask(params, ('backbone',))['backbone']['layer2_0']


@pytest.mark.parametrize('config, arch', [
    ('configs/det/faster_rcnn_r50_fpn_torchvision.py', 'fasterrcnn_resnet50_fpn'),
    ('configs/inst/mask_rcnn_r50_fpn_torchvision.py', 'maskrcnn_resnet50_fpn'),
    ('configs/inst/keypoint_rcnn_r50_fpn_torchvision.py', 'keypointrcnn_resnet50_fpn')])
def test_torchvision_configs_build_the_converted_models(config, arch):
  c = loader.load(config)
  name, kwargs = torchvision_detection.model_kwargs(arch)
  assert c.model.name == name
  model = c.model.to_dict()
  for key, value in kwargs.items():
    if key in ('rpn', 'roi', 'mask', 'keypoint'):
      assert {k: model[key][k] for k in value} == value, key
    elif key in ('score_threshold', 'nms_iou_threshold', 'pre_nms_topk', 'max_detections',
                 'min_size'):
      assert c.detect[key] == value, key
    elif key != 'num_classes':
      assert model[key] == value, key
