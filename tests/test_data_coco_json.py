"""The `coco_json` builder: classes and ids from the file, the fingerprinted cache, bad input."""
import json
import os

import numpy as np
import pytest

from configs import common, loader
from data import coco_json, pipeline, source
from tests import own_data_files


def _config(root, **changes):
  overrides = own_data_files.write_coco_set(str(root), num_train=2, num_eval=2)
  cfg = loader.override(common.data_config(), [o[len('data.'):] for o in overrides])
  cfg.data_dir, cfg.max_boxes = str(root / 'tfds'), 4
  cfg.update(changes)
  return cfg


def _edit(path, change):
  with open(path) as f:
    content = json.load(f)
  change(content)
  with open(path, 'w') as f:
    json.dump(content, f)


def test_classes_and_ids_come_from_the_file(tmp_path):
  cfg = _config(tmp_path)
  info = pipeline.dataset_info(cfg)
  assert info['class_names'] == ['background', 'blob', 'box']  # Sorted by id: 7, 42.
  assert info['category_ids'] == (7, 42)
  assert info['eval_annotations'] == str(tmp_path / 'val.json')
  source = pipeline.DecodedSource(cfg, 'validation')
  ex = source[0]
  val = json.load(open(tmp_path / 'val.json'))
  first = val['images'][0]
  assert ex['image_id'] == first['id'] and ex['image'].shape[:2] == (first['height'],
                                                                    first['width'])
  anns = [a for a in val['annotations'] if a['image_id'] == first['id']]
  assert sorted(ex['labels'].tolist()) == sorted(1 + (a['category_id'] == 42) for a in anns)
  assert ex['difficult'].sum() == 1  # The crowd region.


def test_prepared_copy_follows_the_source_files(tmp_path):
  cfg = _config(tmp_path)
  first = source.ensure_prepared(cfg).data_dir
  assert source.ensure_prepared(cfg).data_dir == first  # Unchanged files: the same copy.
  _edit(tmp_path / 'train.json', lambda c: c['annotations'].pop())
  second = source.ensure_prepared(cfg)
  assert second.data_dir != first and second.is_prepared()
  os.utime(tmp_path / 'images' / 'val_0.jpg', ns=(1, 1))  # A touched image counts too.
  assert source.ensure_prepared(cfg).data_dir not in (first, second.data_dir)


def test_failed_prepare_leaves_nothing_to_read(tmp_path):
  cfg = _config(tmp_path)
  jpeg = tmp_path / 'images' / 'val_0.jpg'
  jpeg.write_bytes(jpeg.read_bytes()[:-200])  # A truncated JPEG.
  with pytest.raises(ValueError, match=r'val_0.jpg is not a readable image.*remove image'):
    source.ensure_prepared(cfg)
  builder = coco_json.CocoJson.from_data_config(cfg)
  assert not builder.is_prepared()
  assert not os.path.exists(builder.data_dir)


def test_boxes_outside_are_clipped_and_zero_area_dropped_and_counted(tmp_path, capsys):
  cfg = _config(tmp_path)

  def change(content):
    image = content['images'][0]
    anns = [a for a in content['annotations'] if a['image_id'] == image['id']]
    anns[0]['bbox'] = [image['width'] - 5, 1, 20, 10]  # Partly outside on the right.
    anns[2]['bbox'] = [3, 3, 0, 4]  # Zero width.
  _edit(tmp_path / 'train.json', change)
  source.ensure_prepared(cfg)
  assert 'clipped 1 boxes partly outside their image to it; dropped 1 zero-area boxes' in (
      capsys.readouterr().out)
  ex = pipeline.DecodedSource(cfg, 'train')[0]
  assert len(ex['boxes']) == 2 and ex['boxes'][:, 3].max() <= ex['image'].shape[1]


@pytest.mark.parametrize('change, message', [
    (lambda c: c['images'].append(dict(c['images'][0], id=999, file_name='gone.jpg')),
     r'image 999 file .*gone.jpg not found; put it there'),
    (lambda c: c['annotations'][0].update(category_id=5),
     r'has category_id 5, not one of the categories \[7, 42\]'),
    (lambda c: c.update(images=[], annotations=[]),
     r'lists no images, so the validation split would be empty'),
    (lambda c: c.pop('categories'), r'is not a COCO-format JSON: no categories list'),
    (lambda c: c['annotations'][0].pop('bbox'), r'"annotations" has no bbox'),
])
def test_bad_input_names_the_file_and_the_fix(tmp_path, change, message):
  cfg = _config(tmp_path)
  _edit(tmp_path / 'val.json', change)
  with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
    source.ensure_prepared(cfg)
  assert 'val.json' in str(error.value) or 'gone.jpg' in str(error.value)
  assert '\n' not in str(error.value)


def test_not_json_and_missing_file(tmp_path):
  cfg = _config(tmp_path)
  (tmp_path / 'val.json').write_text('<annotations/>')
  with pytest.raises(ValueError, match=r'val.json is not JSON .*COCO-format annotation file'):
    pipeline.dataset_info(cfg)
  cfg.eval_json = str(tmp_path / 'nope.json')
  with pytest.raises(FileNotFoundError, match=r'nope.json \(data.eval_json\) not found'):
    pipeline.dataset_info(cfg)


def test_keypoints_take_the_file_names_skeleton_and_sigmas(tmp_path):
  overrides = own_data_files.write_coco_set(str(tmp_path), 2, 2, keypoints=True)
  cfg = loader.override(common.data_config(), [o[len('data.'):] for o in overrides])
  joints = pipeline.dataset_info(cfg)['joints']
  assert joints.names == own_data_files.JOINTS
  assert joints.skeleton == ((0, 1), (0, 2), (0, 3), (0, 4))
  assert joints.flip_permutation == (0, 2, 1, 4, 3)  # left_hand <-> right_hand, feet likewise.
  assert np.isclose(joints.oks_sigmas[0], np.mean(coco_json.joint_sets.COCO_OKS_SIGMAS))
  cfg.keypoint_sigmas = (0.1,) * 5
  assert pipeline.dataset_info(cfg)['joints'].oks_sigmas == (0.1,) * 5


def test_classes_need_only_the_json_files(tmp_path):
  cfg = _config(tmp_path)
  os.remove(tmp_path / 'images' / 'val_0.jpg')  # E.g. predicting on another machine.
  assert pipeline.dataset_info(cfg)['category_ids'] == (7, 42)
  with pytest.raises(FileNotFoundError, match=r'val_0.jpg not found; put it there'):
    source.ensure_prepared(cfg)
