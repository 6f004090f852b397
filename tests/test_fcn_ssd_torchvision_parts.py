"""The pieces around torchvision's FCN-ResNet and SSD300: dilation, the auxiliary loss, the
COCO -> VOC mask rule, SSD's default boxes and its 91-class head mapping (small, no torch)."""
import jax
import jax.numpy as jnp
import numpy as np
from pycocotools import coco as coco_api

from data.coco_voc import CAT_LIST, voc_annotations, voc_semantic_mask
from data.pipeline import dataset_info
from losses.segmentation import pixel_cross_entropy, segmentation_loss
from models import get_backbone
from models.ssd_vgg16 import decode, torchvision_default_boxes
from tests.coco_files import data_config


def test_dilated_resnet_keeps_stride_8():
  model = get_backbone('resnet18', dilate=(False, True, True))
  x = jnp.zeros((1, 64, 48, 3))
  feats = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x,
                                                         train=False))[0]['features']
  assert {s: f.shape[1:3] for s, f in feats.items() if s >= 8} == {
      8: (8, 6), 16: (8, 6), 32: (8, 6)}


def test_aux_loss_adds_half_the_aux_cross_entropy():
  rng = np.random.default_rng(0)
  logits, aux = (jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32) for _ in range(2))
  batch = {'mask': jnp.asarray(rng.integers(0, 3, (2, 4, 4)))}
  loss, metrics = segmentation_loss({'logits': logits, 'aux_logits': aux}, batch, aux_weight=0.5)
  main, _ = pixel_cross_entropy(logits, batch['mask'])
  aux_loss, _ = pixel_cross_entropy(aux, batch['mask'])
  np.testing.assert_allclose(loss, main + 0.5 * aux_loss, rtol=1e-6)
  np.testing.assert_allclose(metrics['aux_loss'], aux_loss, rtol=1e-6)


def test_coco_voc_mask_is_torchvisions_rule():
  square = lambda y, x, s: [[x, y, x + s, y, x + s, y + s, x, y + s]]  # A polygon.
  coco = coco_api.COCO()
  coco.dataset = {
      'images': [{'id': 1, 'height': 20, 'width': 20}],
      'categories': [{'id': c, 'name': str(c)} for c in (1, 3, 90)],
      'annotations': [  # person (VOC 15), car (VOC 7) overlapping it, toothbrush (not VOC).
          {'id': 1, 'image_id': 1, 'category_id': 1, 'segmentation': square(2, 2, 8),
           'area': 64, 'bbox': [2, 2, 8, 8], 'iscrowd': 0},
          {'id': 2, 'image_id': 1, 'category_id': 3, 'segmentation': square(6, 6, 8),
           'area': 64, 'bbox': [6, 6, 8, 8], 'iscrowd': 0},
          {'id': 3, 'image_id': 1, 'category_id': 90, 'segmentation': square(15, 15, 4),
           'area': 16, 'bbox': [15, 15, 4, 4], 'iscrowd': 0}]}
  coco.createIndex()
  anns, labels = voc_annotations(coco, 1)
  assert labels.tolist() == [CAT_LIST.index(1), CAT_LIST.index(3)] == [15, 7]
  mask, ids = voc_semantic_mask(coco, anns, labels, 20, 20)
  person = coco.annToMask(anns[0]) > 0
  car = coco.annToMask(anns[1]) > 0
  assert (mask[person & car] == 255).all() and (person & car).any()  # Overlaps: ignored.
  assert (mask[person & ~car] == 15).all() and (mask[car & ~person] == 7).all()
  assert (mask[~person & ~car] == 0).all()  # The toothbrush is background.
  assert set(np.unique(ids)) == {0, 1, 2}


def test_coco_voc_info_without_data(tmp_path):  # The label -> COCO id map, VOC's names.
  info = dataset_info(data_config(tmp_path, 'coco_voc_segmentation', 'default'))
  assert info['num_classes'] == 21 and info['category_ids'] == CAT_LIST[1:]


def test_ssd_default_boxes_are_torchvisions():
  boxes = torchvision_default_boxes((300, 300), [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3),
                                                  (1, 1)])
  assert boxes.shape == (8732, 4)
  # First cell of conv4_3: centre (0.5 / 37.5) * 300 = 4, sizes 0.07 * 300 = 21 and
  # sqrt(0.07 * 0.15) * 300 = 30.74; the last map's boxes are clipped to the image (1.0).
  np.testing.assert_allclose(boxes[0], [4 - 10.5, 4 - 10.5, 4 + 10.5, 4 + 10.5], atol=1e-4)
  np.testing.assert_allclose(boxes[1, 2] - boxes[1, 0], np.sqrt(0.07 * 0.15) * 300, rtol=1e-5)
  assert (boxes[-4:, 2] - boxes[-4:, 0]).max() <= 300 + 1e-3


def test_ssd_head_classes_pick_the_dataset_columns_of_the_full_softmax():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(1, 3, 6)), jnp.float32)  # A 6-class head.
  outputs = {'class_logits': logits, 'box_deltas': jnp.zeros((1, 3, 4)),
             'anchors': jnp.asarray([[0, 0, 10, 10]] * 3, jnp.float32),
             'head_classes': jnp.asarray([0, 2, 5])}
  _, scores = decode(outputs, (20, 20))
  np.testing.assert_allclose(scores, jax.nn.softmax(logits, -1)[..., [2, 5]], rtol=1e-6)
