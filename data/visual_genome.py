"""Visual Genome v1.2 region descriptions as a tfds builder (`visual_genome`) for dense captioning.

Reads the official files from the manual dir (`config.data.manual_dir`, default
<data_dir>/downloads/manual):
  region_descriptions.json  (or its official .zip) [{id, regions: [{region_id, image_id, phrase,
                            x, y, width, height}]}]
  image_data.json           (or its .zip) [{image_id, width, height, url}]: the image size the
                            regions' pixels refer to, and (the url's folder) where the JPEG is
  VG_100K/, VG_100K_2/      the images <image_id>.jpg, extracted or in images.zip / images2.zip
  densecap_splits.json      optional: DenseCap's splits, {"train": [ids], "val": [..], "test": [..]}

Preprocessing follows DenseCap (Johnson, Karpathy, Fei-Fei, CVPR 2016, sec. 4, and densecap's
preprocess.py): phrases are lower-cased, a few special characters spelled out, punctuation
deleted ("man's" -> "mans"); phrases of more than `max_words` words (10: 7% of VG's) are dropped;
images left with fewer than `min_regions` (20) or more than `max_regions` (50) regions are
dropped; the vocabulary is the words occurring at least `min_word_count` (15) times in the
training split's kept phrases, the rest read as <unk>. Differences: densecap's preprocess.py
counts words over all splits (we count the training split only, so evaluation never shapes the
vocabulary) and does not drop empty phrases or regions that lie wholly outside the image (we
do: they have nothing to describe and break IoU). The paper's referring-phrase stripping ("there
is ...") is not done.

Splits: with densecap_splits.json, its train / val / test (the paper's 77,398 / 5,000 / 5,000)
become 'train' / 'validation' / 'test', images outside every list are left out. Without it, by
image id: id % 20 == 1 -> 'validation', id % 20 == 0 -> 'test', the rest 'train' (~5% each, close
to the paper's proportions; an image's split depends on its id only, not on the filtering).
Empty splits are not written.

Examples have the Shapes format (`data/shapes.py`, `masks=False`):
  id        the VG image id
  image     the JPEG as stored
  objects   box (y1, x1, y2, x2) absolute pixels from VG's (x, y, width, height), clipped to the
            image; label 1 ('region': regions are class-agnostic); phrase, the cleaned text (rare
            words kept as they are: the vocabulary maps them to <unk>)
  caption   empty: VG has no image captions (its paragraphs are a separate dataset), so the image
            captioning task should not train on this one; the key keeps batches alike
The vocabulary is stored in the dataset's metadata (metadata.json, key 'words', most frequent
first) and read back as `VisualGenome(...).vocab` once the dataset is prepared.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import string
import zipfile

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from data import captions
from data.builder import LocalBuilderMixin, example_features
from data.manual import ManualFiles

CLASS_NAMES = ('background', 'region')
_ZIPS = {'VG_100K': 'images.zip', 'VG_100K_2': 'images2.zip'}
_SPLITS = {'train': 'train', 'validation': 'val', 'test': 'test'}  # tfds split -> splits file key.
# densecap's preprocess.py spells these out before deleting punctuation.
_REPLACEMENTS = {'½': 'half', '—': '-', '™': '', '¢': 'cent', 'ç': 'c', 'û': 'u', 'é': 'e',
                 '°': ' degree', 'è': 'e', '…': ''}
_NO_PUNCTUATION = str.maketrans('', '', string.punctuation)


@dataclasses.dataclass
class VisualGenomeConfig(tfds.core.BuilderConfig):
  """DenseCap's filtering thresholds (module docstring)."""
  max_words: int = 10  # Longer phrases are dropped; captions are max_words + 1 tokens (END).
  min_regions: int = 20
  max_regions: int = 50
  min_word_count: int = 15  # In the training split's kept phrases.


def clean_phrase(phrase: str) -> str:
  """DenseCap's words_preprocess: lower case, special characters spelled out, punctuation
  deleted, whitespace collapsed."""
  for old, new in _REPLACEMENTS.items():
    phrase = phrase.replace(old, new)
  return ' '.join(phrase.lower().translate(_NO_PUNCTUATION).split())


def region_boxes(regions: list[dict], height: int, width: int) -> np.ndarray:
  """float32 [K, 4] (y1, x1, y2, x2) of VG regions (x, y, width, height), clipped to the image."""
  x, y, w, h = np.asarray([[r['x'], r['y'], r['width'], r['height']] for r in regions],
                          np.float32).reshape(-1, 4).T
  boxes = np.stack([y, x, y + h, x + w], axis=1)
  return boxes.clip(0, np.asarray([height, width, height, width], np.float32))


def image_regions(image: dict, size: tuple[int, int],
                  cfg: VisualGenomeConfig) -> tuple[np.ndarray, list[str]] | None:
  """(boxes, cleaned phrases) of the regions of one region_descriptions.json entry that DenseCap
  keeps, or None if the image is dropped for its number of regions."""
  boxes = region_boxes(image['regions'], *size)
  phrases = [clean_phrase(r['phrase']) for r in image['regions']]
  keep = [k for k, p in enumerate(phrases) if 0 < len(p.split()) <= cfg.max_words and
          boxes[k, 2] > boxes[k, 0] and boxes[k, 3] > boxes[k, 1]]
  if not cfg.min_regions <= len(keep) <= cfg.max_regions:
    return None
  return boxes[keep], [phrases[k] for k in keep]


def assign_splits(image_ids, splits: dict[str, list[int]] | None) -> dict[str, list[int]]:
  """tfds split -> the sorted image ids in it (module docstring: the file's lists or the ids)."""
  if splits is None:
    split_of = lambda i: 'validation' if i % 20 == 1 else 'test' if i % 20 == 0 else 'train'
  else:
    lookup = {i: split for split, key in _SPLITS.items() for i in splits.get(key, [])}
    split_of = lookup.get
  out = {split: [] for split in _SPLITS}
  for image_id in sorted(image_ids):
    split = split_of(image_id)
    if split is not None:
      out[split].append(image_id)
  return out


def build_vocabulary(phrases, min_count: int) -> list[str]:
  """The words occurring at least `min_count` times, most frequent first (ties alphabetical)."""
  counts = collections.Counter(w for p in phrases for w in p.split())
  return sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))


def _read_json(manual_dir: epath.Path, name: str):
  """manual_dir/name, or the file inside the official name.zip."""
  path = manual_dir / name
  if path.exists():
    return json.loads(path.read_text())
  if (manual_dir / f'{name}.zip').exists():
    with zipfile.ZipFile(os.fspath(manual_dir / f'{name}.zip')) as archive:
      return json.loads(archive.read(name))
  raise FileNotFoundError(f'{name} (or {name}.zip) not found in manual dir {manual_dir}. '
                          f'{VisualGenome.MANUAL_DOWNLOAD_INSTRUCTIONS}')


class VisualGenome(LocalBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Visual Genome v1.2 regions with DenseCap's phrase preprocessing and image filtering."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Region descriptions of VG v1.2, DenseCap preprocessing.'}
  BUILDER_CONFIGS = [
      VisualGenomeConfig(name='default', description='DenseCap: <= 10 words, 20-50 regions per '
                         'image, words seen >= 15 times.'),
      VisualGenomeConfig(name='tiny', description='Relaxed thresholds for tiny test files: 2-5 '
                         'regions per image, words seen >= 2 times.',
                         min_regions=2, max_regions=5, min_word_count=2),
  ]
  DEFAULT_CONFIG_NAME = 'default'
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Download region_descriptions.json.zip, image_data.json.zip, images.zip and images2.zip '
      '(Visual Genome v1.2) from https://homes.cs.washington.edu/~ranjay/visualgenome/api.html '
      'into the manual dir (the images may be extracted to VG_100K/ and VG_100K_2/); for the '
      "DenseCap paper's splits add densecap's info/densecap_splits.json.")

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  @property
  def vocab(self) -> captions.Vocabulary:
    """The vocabulary of the training phrases (the pipeline reads it); needs the prepared data."""
    words = self.info.metadata.get('words')
    if words is None:
      raise ValueError(f'The visual_genome/{self.builder_config.name} vocabulary comes from its '
                       'training phrases: prepare the dataset first (data.ensure_prepared('
                       'config.data), with the official files in the manual dir).')
    return captions.Vocabulary(words, max_len=self.builder_config.max_words + 1)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=example_features(CLASS_NAMES, image_format='jpeg', masks=False,
                                         phrases=True),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # Record order = ascending image id.
        homepage='https://visualgenome.org/',
    )

  def _split_generators(self, dl_manager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    sizes = {i['image_id']: i for i in _read_json(manual_dir, 'image_data.json')}
    kept = {}
    for image in _read_json(manual_dir, 'region_descriptions.json'):
      info = sizes[image['id']]
      regions = image_regions(image, (int(info['height']), int(info['width'])),
                              self.builder_config)
      if regions is not None:
        kept[image['id']] = regions
    splits_path = manual_dir / 'densecap_splits.json'
    splits = json.loads(splits_path.read_text()) if splits_path.exists() else None
    ids = {split: ids for split, ids in assign_splits(kept, splits).items() if ids}
    if 'train' not in ids:
      raise ValueError(f'No Visual Genome training image in {manual_dir} passes the filters of '
                       f'config {self.builder_config.name!r}; the vocabulary needs some.')
    self.info.metadata['words'] = build_vocabulary(
        (p for i in ids['train'] for p in kept[i][1]), self.builder_config.min_word_count)
    folders = {i: sizes[i]['url'].rstrip('/').split('/')[-2] for i in kept}
    return {split: self._generate_examples(manual_dir, [(i, folders[i], *kept[i]) for i in sel])
            for split, sel in ids.items()}

  def _generate_examples(self, manual_dir: epath.Path, images: list):
    files = ManualFiles(manual_dir, _ZIPS)
    try:
      for image_id, folder, boxes, phrases in images:
        yield image_id, {
            'id': str(image_id),
            'image': files.read(folder, f'{image_id}.jpg'),
            'objects': {'box': boxes, 'label': np.ones(len(boxes), np.int64), 'phrase': phrases},
            'caption': '',
        }
    finally:
      files.close()
