"""What the builders of user files (`coco_json`, `mask_folder`) share: the fingerprint that
names their prepared copy, checked image reading, and construction from `config.data`.

A prepared copy is keyed by the hash of its source files' paths, sizes and modification times
(and of whatever else defines it), so an edited, added or removed file makes a new copy: a
stale one is never read. Stat-ing is cheap next to reading (1000 images: milliseconds).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os

import tensorflow_datasets as tfds
from PIL import Image

from data import builder


def fingerprint(paths, extra: bytes = b'') -> str:
  """16 hex digits over `extra` and each file's absolute path, size and mtime (in order).

  Raises FileNotFoundError for a missing file; callers catch it to say which entry named it.
  """
  h = hashlib.sha256(extra)
  for path in paths:
    st = os.stat(path)
    h.update(f'{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
  return h.hexdigest()[:16]


def read_image_file(path: str, fix: str) -> tuple[bytes, tuple[int, int]]:
  """The file's bytes and (height, width), after checking that it decodes fully; `fix` ends
  the one-line error otherwise."""
  with open(path, 'rb') as f:
    data = f.read()
  try:
    img = Image.open(io.BytesIO(data))
    img.load()
  except Exception as e:  # PIL raises several types for truncated / corrupt files.
    raise ValueError(f'{path} is not a readable image ({e}); {fix}') from e
  return data, (img.height, img.width)


class UserFilesBuilder(builder.LocalBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """A builder whose config comes from config.data paths rather than from a fixed list of
  variants: subclasses set `make_config(cfg)` (a static method returning a BuilderConfig named
  by a fingerprint)."""

  BUILDER_CONFIGS = []  # One per set of source files, made by `from_data_config`.

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  @classmethod
  def from_data_config(cls, cfg):
    data_dir = cfg.get('data_dir') if hasattr(cfg, 'get') else None
    config = cls.make_config(cfg)
    # tfds warns about every config not in BUILDER_CONFIGS, printing all of it: all of ours are.
    quiet = _DropMessage('Using custom data configuration')
    logging.getLogger('absl').addFilter(quiet)
    try:
      return cls(config=config, data_dir=data_dir)
    finally:
      logging.getLogger('absl').removeFilter(quiet)


class _DropMessage(logging.Filter):
  def __init__(self, prefix: str):
    super().__init__()
    self.prefix = prefix

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(self.prefix)
