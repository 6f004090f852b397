"""predict.py's inputs (file lists, image modes) and the eval-time frame: resize rule, canvases,
mapping predictions back to the original image. No model needed."""
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from data import eval_resize
from metrics import coco_protocol
from tasks import drawing
from tests import own_data_files
from tools import predict


def test_reference_resize_rule_and_canvases():
  assert eval_resize.resized_hw(480, 640, 800, 1333) == (800, 1066)  # Upscaled: shorter side 800.
  assert eval_resize.resized_hw(100, 1000, 800, 1333) == (133, 1333)  # Longer side capped.
  assert eval_resize.resized_hw(2000, 1000, 800, 1333) == (1333, 666)
  choices = eval_resize.canvases(800, 1333, 32)
  assert choices == [(800, 1344), (1344, 800), (1344, 1344)]
  assert eval_resize.canvas_for([(800, 1066), (533, 800)], choices) == (800, 1344)
  assert eval_resize.canvas_for([(800, 1066), (1333, 666)], choices) == (1344, 1344)


def test_results_are_in_the_original_frame_with_the_files_ids():
  pred = dict(boxes=np.array([[10, 20, 50, 60], [0, 0, 5, 5]], np.float32),
              scores=np.array([0.9, 0.2]), labels=np.array([2, 1]), valid=np.array([True, True]),
              mask_probs=np.ones((2, 28, 28), np.float32),
              keypoints=np.array([[[10.5, 20.5, 3.0]], [[1, 1, 1]]], np.float32))
  # Resized 2x: 100x200 content of a 50x100 image.
  out = coco_protocol.image_results(pred, image_hw=(100, 200), orig_hw=(50, 100), image_id=9,
                                    category_ids=(7, 42), score_threshold=0.5,
                                    extra={'file_name': 'a.png'})
  assert len(out) == 1
  r = out[0]
  assert (r['image_id'], r['category_id'], r['file_name']) == (9, 42, 'a.png')
  assert r['bbox'] == [10.0, 5.0, 20.0, 20.0]  # x, y, w, h at half the resized coordinates.
  rle = dict(r['segmentation'], counts=r['segmentation']['counts'].encode())
  assert rle['size'] == [50, 100] and mask_utils.area(rle) == 400
  assert r['keypoints'] == [9.75, 4.75, 1.0]  # (20.5 / 2, 10.5 / 2) as COCO pixel indices.


def test_images_of_any_mode_read_as_rgb(tmp_path):
  Image.fromarray(np.full((6, 8), 100, np.uint8), 'L').save(tmp_path / 'gray.png')
  rgba = np.zeros((6, 8, 4), np.uint8)
  rgba[..., 0], rgba[:3, ..., 3] = 200, 255  # Top half opaque red, bottom transparent.
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
  Image.fromarray(np.linspace(0, 65535, 48).reshape(6, 8).astype(np.uint16)).save(
      tmp_path / 'deep.png')
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
  Image.new('RGB', (8, 6), (0, 0, 255)).save(tmp_path / 'turned.jpg', exif=exif)
  gray = predict.read_image(str(tmp_path / 'gray.png'))
  assert gray.shape == (6, 8, 3) and (gray == 100).all()
  rgba = predict.read_image(str(tmp_path / 'rgba.png'))
  assert tuple(rgba[0, 0]) == (200, 0, 0) and tuple(rgba[5, 0]) == (255, 255, 255)
  deep = predict.read_image(str(tmp_path / 'deep.png'))
  assert deep.dtype == np.uint8 and deep.min() == 0 and deep.max() == 255
  assert predict.read_image(str(tmp_path / 'turned.jpg')).shape == (8, 6, 3)
  names = ['turned.jpg', 'gray.png', 'rgba.png']  # Shown portrait, landscape, landscape.
  ordered = predict.by_orientation([str(tmp_path / n) for n in names])
  assert [p.rsplit('/', 1)[1] for p in ordered] == ['gray.png', 'rgba.png', 'turned.jpg']


def test_image_lists_from_files_folders_and_globs(tmp_path):
  for name in ('b.jpg', 'a.png', 'notes.txt'):
    (tmp_path / name).write_bytes(b'')
  found = predict.find_images([str(tmp_path), str(tmp_path / '*.jpg'), str(tmp_path / 'a.png')])
  assert found == [str(tmp_path / 'a.png'), str(tmp_path / 'b.jpg')]
  with pytest.raises(FileNotFoundError, match=r'--images .*nothing\*: no such file'):
    predict.find_images([str(tmp_path / 'nothing*')])
  (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 not really')
  with pytest.raises(ValueError, match=r'broken.jpg is not a readable image'):
    predict.read_image(str(tmp_path / 'broken.jpg'))


def test_legends_with_many_classes_wrap_into_rows(tmp_path):
  names = [f'class {i}' for i in range(81)]
  tile = np.zeros((64, 96, 3), np.uint8)
  drawing.save_panel([tile], ['x'], str(tmp_path / 'all.png'), scale=1, legend=names)
  drawing.save_panel([tile], ['x'], str(tmp_path / 'some.png'), scale=1, legend=names,
                     legend_ids=[3, 40])
  tall, short = Image.open(tmp_path / 'all.png'), Image.open(tmp_path / 'some.png')
  assert tall.width == short.width == 96
  assert tall.height > 64 + 14 + 20 * 14 and short.height == 64 + 14 + 2 * 14 + 2


def test_protocol_scores_perfect_predictions_one(tmp_path):
  """Ground truth moved into a 2x resized frame as (y, x) pixel centres, then evaluated: the
  mapping back gives box and keypoint AP 1 against the file itself."""
  own_data_files.write_coco_set(str(tmp_path), num_train=1, num_eval=2, keypoints=True)
  val = json.load(open(tmp_path / 'val.json'))
  evaluator = coco_protocol.ProtocolEvaluator(str(tmp_path / 'val.json'), (3,),
                                              ('bbox', 'keypoints'), [0.05] * 5)
  for image in val['images']:
    anns = [a for a in val['annotations'] if a['image_id'] == image['id']]
    x, y, w, h = np.asarray([a['bbox'] for a in anns]).T
    kp = np.asarray([a['keypoints'] for a in anns], np.float64).reshape(len(anns), 5, 3)
    pred = dict(boxes=2 * np.stack([y, x, y + h, x + w], 1), scores=np.linspace(0.9, 0.5, len(x)),
                labels=np.ones(len(x), int), valid=np.ones(len(x), bool),
                keypoints=np.stack([2 * (kp[..., 1] + 0.5), 2 * (kp[..., 0] + 0.5),
                                    kp[..., 2]], -1))
    evaluator.add(pred, image_hw=(2 * image['height'], 2 * image['width']),
                  orig_hw=(image['height'], image['width']), image_id=image['id'])
  metrics = evaluator.compute()
  assert metrics['AP'] == metrics['keypoint_AP'] == 1.0
