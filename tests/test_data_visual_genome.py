"""The `visual_genome/tiny` builder on tiny official-format files written here: DenseCap's phrase
cleaning and filtering, boxes, the training vocabulary, splits, and batches through the pipeline."""
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

import data
from configs import common
from data import augment, captions, pipeline, visual_genome

# Image id -> (height, width) and regions (x, y, width, height, phrase). Splits by id % 20:
# 21 validation, 40 test, the rest train.
_IMAGES = {
    2: ((40, 60), [(5, 10, 20, 15, 'A red Car.'),
                   (50, 30, 30, 20, "The red car's WHEEL!"),  # Past the bottom-right corner.
                   (0, 0, 60, 40, 'a photo of a red car parked on the side of the road'),
                   (1, 2, 3, 4, 'a zebra'),  # 'zebra': once in train, below the threshold.
                   (70, 0, 5, 5, 'a car')]),  # Wholly right of the image: dropped.
    3: ((32, 32), [(-5, -3, 10, 10, 'red  wheel'), (8, 8, 16, 16, 'a ...car')]),
    4: ((32, 32), [(0, 0, 8, 8, 'a zebra')]),  # One region: the image is dropped.
    5: ((32, 32), [(0, 0, 8, 8, 'a zebra')] * 6),  # Six regions: dropped.
    21: ((32, 48), [(0, 0, 10, 10, 'a blue car'), (10, 10, 10, 10, 'blue wheel')]),
    40: ((24, 24), [(0, 0, 10, 10, 'a car'), (4, 4, 10, 10, 'a car')]),
}
_IN_ZIP = 3  # In images2.zip (VG_100K_2); the others extracted in VG_100K/.


def _write_manual(manual):
  os.makedirs(manual / 'VG_100K')
  regions, image_data = [], []
  with zipfile.ZipFile(manual / 'images2.zip', 'w') as archive:
    for image_id, ((h, w), rows) in _IMAGES.items():
      folder = 'VG_100K_2' if image_id == _IN_ZIP else 'VG_100K'
      pixels = np.random.default_rng(image_id).integers(0, 255, (h, w, 3), np.uint8)
      path = manual / f'{image_id}.jpg'
      Image.fromarray(pixels).save(path, format='JPEG')
      if image_id == _IN_ZIP:
        archive.write(path, f'{folder}/{image_id}.jpg')
        os.remove(path)
      else:
        os.rename(path, manual / folder / f'{image_id}.jpg')
      image_data.append({'image_id': image_id, 'width': w, 'height': h, 'coco_id': None,
                         'url': f'https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg'})
      regions.append({'id': image_id, 'regions': [
          {'region_id': 100 * image_id + k, 'image_id': image_id, 'phrase': phrase, 'x': x,
           'y': y, 'width': bw, 'height': bh} for k, (x, y, bw, bh, phrase) in enumerate(rows)]})
  (manual / 'image_data.json').write_text(json.dumps(image_data))
  (manual / 'region_descriptions.json').write_text(json.dumps(regions))


@pytest.fixture(scope='module')
def cfg(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('visual_genome')
  _write_manual(tmp / 'manual')
  c = common.data_config()
  c.name, c.variant = 'visual_genome', 'tiny'
  c.data_dir, c.manual_dir = str(tmp / 'data'), str(tmp / 'manual')
  c.image_size, c.max_boxes = 64, 4
  return c


def test_phrase_cleaning_and_default_splits():
  assert visual_genome.clean_phrase("The man's  T-shirt, ½ off…!") == 'the mans tshirt half off'
  assert visual_genome.clean_phrase('30° C') == '30 degree c'
  assert visual_genome.assign_splits([41, 2, 40, 3, 21], None) == {
      'train': [2, 3], 'validation': [21, 41], 'test': [40]}
  # DenseCap's file: its 'val' is our 'validation'; ids in no list (3) are left out.
  assert visual_genome.assign_splits([2, 3, 21, 40], {'train': [40, 2], 'val': [21], 'test': []}) \
      == {'train': [2, 40], 'validation': [21], 'test': []}


def test_builder_vocabulary_and_batches(cfg):
  with pytest.raises(ValueError, match='prepare the dataset first'):
    data.dataset_info(cfg)
  builder = data.ensure_prepared(cfg)
  assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
      'train': 2, 'validation': 1, 'test': 1}  # Images 4 and 5 dropped for their region counts.

  # Train words: a 3, red 3, car 2, wheel 2 (cars, the, zebra once); 'blue' is only in
  # validation. Most frequent first, ties alphabetical.
  info = data.dataset_info(cfg)  # A fresh builder: the words come from metadata.json.
  vocab = info['vocab']
  assert vocab.words[len(captions.SPECIAL):] == ('a', 'red', 'car', 'wheel')
  assert info['max_caption_len'] == 11 and info['class_names'] == ['background', 'region']

  train = pipeline.DecodedSource(cfg, 'train')
  ex = train[0]  # Image 2.
  np.testing.assert_allclose(ex['boxes'], [[10, 5, 25, 25], [30, 50, 40, 60], [2, 1, 6, 4]])
  assert [vocab.decode(c) for c in ex['captions']] == ['a red car', '<unk> red <unk> wheel',
                                                      'a <unk>']
  np.testing.assert_array_equal(ex['labels'], [1, 1, 1])
  assert ex['image'].shape == (40, 60, 3) and (ex['mask'] == augment.IGNORE).all()
  ex3 = train[1]  # Image 3, read from images2.zip; its box at (-5, -3) is clipped.
  np.testing.assert_allclose(ex3['boxes'], [[0, 0, 7, 5], [8, 8, 24, 24]])
  assert [vocab.decode(c) for c in ex3['captions']] == ['red wheel', 'a car']
  assert vocab.decode(ex3['caption']) == ''  # VG has no image captions.

  # Box-only data: a flip moves the annotated boxes geometrically (width 60).
  flipped = augment.transform(dict(ex, image=ex['image'].astype(np.float32) / 255), flip=True,
                              out_hw=(40, 60), oy=0, ox=0, crop_hw=(40, 60))
  np.testing.assert_allclose(flipped['boxes'], [[10, 35, 25, 55], [30, 0, 40, 10], [2, 56, 6, 59]])

  batch = next(iter(data.make_eval_batches(cfg, batch_size=2, split='train')))
  assert batch['captions'].shape == (2, 4, 11) and batch['caption'].shape == (2, 11)
  np.testing.assert_array_equal(batch['valid'], [[True, True, True, False],
                                                 [True, True, False, False]])
  decoded = [[vocab.decode(c) for c in batch['captions'][i][batch['valid'][i]]] for i in range(2)]
  assert decoded == [['a red car', '<unk> red <unk> wheel', 'a <unk>'], ['red wheel', 'a car']]
  np.testing.assert_allclose(batch['boxes'][1, :2], [[0, 0, 7, 5], [8, 8, 24, 24]])
  val = next(iter(data.make_eval_batches(cfg, batch_size=1)))
  assert [vocab.decode(c) for c in val['captions'][0][val['valid'][0]]] == ['a <unk> car',
                                                                            '<unk> wheel']
