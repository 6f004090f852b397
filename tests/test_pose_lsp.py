"""The LSP builder on a tiny archive written here: 3 images and a joints.mat in LSP's layout."""
import io
import zipfile

import numpy as np
import scipy.io
from PIL import Image

import data
from configs import common


def _write_archive(path, rng):
  joints = np.zeros((3, 14, 3))  # LSP: x, y, occluded; 14 joints; images.
  joints[0] = rng.uniform(5, 25, (14, 3))
  joints[1] = rng.uniform(5, 35, (14, 3))
  joints[2] = rng.integers(0, 2, (14, 3))
  mat = io.BytesIO()
  scipy.io.savemat(mat, {'joints': joints})
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('joints.mat', mat.getvalue())
    for i in range(3):
      jpeg = io.BytesIO()
      Image.fromarray(rng.integers(0, 255, (40, 30, 3), np.uint8)).save(jpeg, format='JPEG')
      archive.writestr(f'images/im{i + 1:04d}.jpg', jpeg.getvalue())
  return joints


def test_lsp_builder_reads_the_archive(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  joints = _write_archive(manual / 'lsp_dataset.zip', np.random.default_rng(0))
  cfg = common.data_config()
  cfg.update(name='lsp', data_dir=str(tmp_path / 'tfds'), manual_dir=str(manual), max_boxes=1)
  builder = data.ensure_prepared(cfg)
  assert builder.info.splits['train'].num_examples == 1  # The first half trains.
  assert builder.info.splits['validation'].num_examples == 2
  assert data.dataset_info(cfg)['class_names'] == ['background', 'person']

  batch = next(iter(data.make_eval_batches(cfg, batch_size=2)))
  assert batch['image'].shape == (2, 64, 64, 3) and batch['keypoints'].shape == (2, 1, 14, 3)
  for row, index in enumerate((1, 2)):  # Images 2 and 3, fitted into 64x64 without scaling.
    x, y, occluded = joints[:, :, index]
    expected = np.stack([y - 0.5, x - 0.5, np.where(occluded > 0, 1, 2)], -1)
    np.testing.assert_allclose(batch['keypoints'][row, 0], expected, rtol=1e-5)
    y1, x1, y2, x2 = batch['boxes'][row, 0]
    assert y1 <= expected[:, 0].min() and y2 >= expected[:, 0].max()
    assert x1 <= expected[:, 1].min() and x2 >= expected[:, 1].max()
  assert batch['valid'].all() and batch['labels'][:, 0].tolist() == [1, 1]
