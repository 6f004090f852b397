"""Procedural Shapes: RGB scenes of circles, squares, triangles and stars on textured backgrounds.

A tfds builder (`file_format='array_record'`) so the data is read like any real dataset, through
`tfds.data_source` + grain, with no TensorFlow. Every example is drawn from its own generator seeded
by (config seed, split id, index), so the content never depends on generation order or parallelism.

Variants: `multi_object` (the default), `single` (one labelled object, for classification +
localization), `people` (one stick figure with the 14 LSP joints, for human pose) and `captions`
(multi-object scenes in named colours with a phrase per object, for dense captioning:
`data/captions.py`).

Example features (shared with `data/voc.py`, so the pipeline treats both alike):
  id            text        '<split>_<index>'
  image         PNG uint8   [H, W, 3]
  mask          PNG uint8   [H, W, 1]  semantic class, 0 = background (255 = ignore, VOC only)
  instance_ids  PNG uint8   [H, W, 1]  k = visible pixels of objects[k - 1], 0 = none
  objects       sequence of {box: float32 [4] (y1, x1, y2, x2) absolute pixels, tight around the
                visible pixels, y2/x2 exclusive (= last pixel + 1); label: ClassLabel;
                people only: keypoints float32 [14, 3] (y, x, v), see `ops/joints.py`;
                captions only: phrase text}
  caption       text        captions only: the whole image's caption
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw

from data import captions, people
from data.builder import LocalBuilderMixin, encode_png, example_features, finalize_instances
from ops.joints import LSP_14, NUM_JOINTS, JointSet

CLASS_NAMES = ('background', 'circle', 'square', 'triangle', 'star')
PEOPLE_CLASS_NAMES = ('background', 'person')
_SPLIT_IDS = {'train': 1, 'validation': 2, 'test': 3}


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  """One Shapes variant.

  `variant` selects the scene generator in `_RENDERERS`: 'multi_object', 'single' or 'people'.
  For 'single' and 'people', min_size/max_size bound the object's diameter / the figure's height.
  """
  variant: str = 'multi_object'
  image_size: int = 64
  num_train: int = 4000
  num_validation: int = 500
  max_objects: int = 6  # Each scene has 1..max_objects objects before occlusion checks.
  min_size: int = 12  # Diameter of the circumscribed circle, pixels.
  max_size: int = 30
  min_visible: float = 0.35  # A placement is retried if it hides more than this of an object.
  seed: int = 0
  captions: bool = False  # multi_object: named colours, a phrase per object and an image caption.


# ----------------------------------------------------------------------------------- drawing ---


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """A float32 [S, S, 3] texture in [0, 255]: smooth noise, gradient or stripes, plus grain."""
  base = rng.uniform(40, 215, size=3)
  kind = rng.integers(4)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  if kind == 0:  # Smooth noise: a coarse random grid upsampled by repetition + blur-free bilinear.
    coarse = rng.normal(0, 25, size=(5, 5, 3)).astype(np.float32)
    idx = np.linspace(0, 4, size, dtype=np.float32)
    i0 = np.floor(idx).astype(int).clip(0, 3)
    f = (idx - i0)[:, None]
    rows = coarse[i0] * (1 - f[..., None]) + coarse[i0 + 1] * f[..., None]  # [S, 5, 3]
    tex = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]
  elif kind == 1:  # Linear gradient towards a second colour at a random angle.
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy)
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    tex = t[..., None] * rng.uniform(-70, 70, size=3)
  elif kind == 2:  # Stripes at a random angle and period.
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.08, 0.3)
    t = (np.cos(angle) * xx + np.sin(angle) * yy) / period
    tex = (np.sin(2 * np.pi * t) > 0)[..., None] * rng.uniform(-45, 45, size=3)
  else:  # Plain.
    tex = np.zeros((size, size, 3), np.float32)
  grain = rng.normal(0, rng.uniform(2, 10), size=(size, size, 1))
  return np.clip(base + tex + grain, 0, 255).astype(np.float32)


def _shape_mask(rng: np.random.Generator, cls: int, cy: float, cx: float, radius: float,
                size: int) -> np.ndarray:
  """Boolean [S, S] mask of one shape (class id 1..4) with a random rotation."""
  canvas = Image.new('L', (size, size), 0)
  draw = ImageDraw.Draw(canvas)
  theta = rng.uniform(0, 2 * np.pi)
  if cls == 1:
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
  else:
    if cls == 2:
      angles = theta + np.arange(4) * np.pi / 2
      radii = np.full(4, radius)
    elif cls == 3:
      angles = theta + np.arange(3) * 2 * np.pi / 3
      radii = np.full(3, radius)
    else:  # Five-pointed star: alternate outer and inner vertices.
      angles = theta + np.arange(10) * np.pi / 5
      radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    draw.polygon([tuple(p) for p in pts], fill=1)
  return np.asarray(canvas, dtype=bool)


def _contrasting_colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
  """The candidate colour farthest from every colour in `avoid` [N, 3] (keeps objects visible)."""
  candidates = rng.uniform(0, 255, size=(16, 3))
  dist = np.linalg.norm(candidates[:, None] - avoid[None], axis=2).min(axis=1)
  return candidates[np.argmax(dist)]


def _dilate(mask: np.ndarray) -> np.ndarray:
  out = mask.copy()
  out[1:] |= mask[:-1]
  out[:-1] |= mask[1:]
  out[:, 1:] |= mask[:, :-1]
  out[:, :-1] |= mask[:, 1:]
  return out


def render_multi_object(rng: np.random.Generator, cfg: ShapesConfig) -> dict[str, np.ndarray]:
  """One scene: image uint8 [S,S,3], mask and instance_ids uint8 [S,S], boxes [K,4], labels [K]."""
  size = cfg.image_size
  image = _background(rng, size)
  inst = np.zeros((size, size), np.uint8)
  areas, classes, colours, names, sizes = [], [], [], [], []
  for _ in range(int(rng.integers(1, cfg.max_objects + 1))):
    for _attempt in range(6):
      cls = int(rng.integers(1, len(CLASS_NAMES)))
      radius = rng.uniform(cfg.min_size, cfg.max_size) / 2
      cy, cx = rng.uniform(radius, size - radius, size=2)
      shape = _shape_mask(rng, cls, cy, cx, radius, size)
      area = int(shape.sum())
      if area < 8:
        continue
      k = len(areas) + 1
      new_inst = np.where(shape, np.uint8(k), inst)
      visible = np.bincount(new_inst.ravel(), minlength=k + 1)[1:k]
      # Occlusion is allowed but every earlier object must keep a recognisable visible part.
      if len(areas) and np.any(visible < cfg.min_visible * np.asarray(areas)):
        continue
      # Contrast with what it covers and with the objects it touches, so instances stay separable.
      touching = np.unique(inst[_dilate(shape)])
      avoid = np.asarray([image[shape].mean(axis=0)] + [colours[j - 1] for j in touching if j])
      if cfg.captions:
        name, colour = captions.pick_colour(rng, avoid)
        names.append(name)
        sizes.append(captions.SIZES[int(2 * radius >= (cfg.min_size + cfg.max_size) / 2)])
      else:
        colour = _contrasting_colour(rng, avoid)
      shading = rng.normal(0, 4, size=(area, 1))  # A little texture on the object too.
      image[shape] = np.clip(colour + shading, 0, 255)
      inst = new_inst
      areas.append(area)
      classes.append(cls)
      colours.append(colour)
      break
  ex = finalize_instances(image.astype(np.uint8), inst, np.asarray(classes, np.int64))
  if cfg.captions:
    kept = ex['kept']
    ex['phrases'], ex['caption'] = captions.shapes_phrases(
        ex['boxes'], [CLASS_NAMES[c] for c in ex['labels']], [names[k] for k in kept],
        [sizes[k] for k in kept])
  return ex


def render_single(rng: np.random.Generator, cfg: ShapesConfig) -> dict[str, np.ndarray]:
  """One object of a random class, size and place: classification + localization."""
  size = cfg.image_size
  image = _background(rng, size)
  cls = int(rng.integers(1, len(CLASS_NAMES)))
  radius = rng.uniform(cfg.min_size, cfg.max_size) / 2
  cy, cx = rng.uniform(radius, size - radius, size=2)
  shape = _shape_mask(rng, cls, cy, cx, radius, size)
  colour = _contrasting_colour(rng, image[shape].mean(axis=0, keepdims=True))
  image[shape] = np.clip(colour + rng.normal(0, 4, size=(int(shape.sum()), 1)), 0, 255)
  return finalize_instances(image.astype(np.uint8), shape.astype(np.uint8),
                            np.asarray([cls], np.int64))


def render_people(rng: np.random.Generator, cfg: ShapesConfig) -> dict[str, np.ndarray]:
  """One stick figure in a random pose, size, place and colour; sometimes partly occluded.

  The occluder is a Shapes object drawn over the figure: joints under it are labelled but
  occluded (v = 1), the rest visible (v = 2). The mask and instance ids keep the whole figure
  (amodal), so the person box spans every joint. Adds `keypoints` [1, 14, 3] to the example.
  """
  size = cfg.image_size
  image = _background(rng, size)
  height = rng.uniform(cfg.min_size, cfg.max_size)
  joints = people.stick_figure_joints(rng, height)
  low, high = joints.min(axis=0) - 2, joints.max(axis=0) + 2  # Keep the whole figure inside.
  joints += rng.uniform(-low, np.maximum(size - high, -low + 1e-3))
  figure = people.draw_stick_figure(joints, height, size)
  colour = _contrasting_colour(rng, image[figure].mean(axis=0, keepdims=True))
  image[figure] = np.clip(colour + rng.normal(0, 4, size=(int(figure.sum()), 1)), 0, 255)
  joints += 0.5  # PIL draws at pixel centres; our coordinates put pixel i's centre at i + 0.5.
  visible = np.ones(NUM_JOINTS, bool)
  if rng.random() < 0.3:
    cy, cx = joints[rng.integers(NUM_JOINTS)] + rng.normal(0, 0.1 * height, size=2)
    occluder = _shape_mask(rng, int(rng.integers(1, len(CLASS_NAMES))), cy, cx,
                           rng.uniform(0.1, 0.2) * height, size)
    image[occluder] = _contrasting_colour(rng, np.stack([colour, image[occluder].mean(0)]))
    rows, cols = np.clip(joints.astype(int), 0, size - 1).T
    visible = ~occluder[rows, cols]
  ex = finalize_instances(image.astype(np.uint8), figure.astype(np.uint8),
                          np.asarray([1], np.int64))
  keypoints = np.concatenate([joints, np.where(visible, 2.0, 1.0)[:, None]], axis=1)
  return dict(ex, keypoints=keypoints[None].astype(np.float32)[:len(ex['labels'])])


_RENDERERS = {'multi_object': render_multi_object, 'single': render_single,
              'people': render_people}


def render(cfg: ShapesConfig, split: str, index: int) -> dict[str, np.ndarray]:
  """The example `index` of `split`: a pure function of (config, split, index)."""
  rng = np.random.default_rng([cfg.seed, _SPLIT_IDS[split], index])
  return _RENDERERS[cfg.variant](rng, cfg)


# ----------------------------------------------------------------------------------- builder ---


class Shapes(LocalBuilderMixin, tfds.core.GeneratorBasedBuilder):
  """Procedural multi-object shapes with semantic and instance masks and boxes."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Multi-object scenes: circle, square, triangle, star; single objects; '
                            'stick-figure people with 14 joints.'}
  BUILDER_CONFIGS = [
      ShapesConfig(name='default', description='64x64, 4000 train / 500 validation.'),
      ShapesConfig(name='small', description='64x64, 256 train / 64 validation (tests).',
                   num_train=256, num_validation=64),
      # Segmentation at 64x64 is capped by FCN-8s's stride-8 scores: even ideal stride-8 class
      # maps, bilinearly upsampled, give 0.73 mean IoU there. At twice the scale the cap is 0.88.
      ShapesConfig(name='large', description='128x128, objects 24-60 px, 4000 / 500.',
                   image_size=128, min_size=24, max_size=60),
      ShapesConfig(name='single', description='One object of 16-44 px per 64x64 image.',
                   variant='single', min_size=16, max_size=44),
      ShapesConfig(name='single_small', description='`single`, 256 train / 64 validation.',
                   variant='single', min_size=16, max_size=44, num_train=256, num_validation=64),
      ShapesConfig(name='people', description='One stick figure of 36-60 px with 14 joints.',
                   variant='people', min_size=36, max_size=60),
      ShapesConfig(name='people_small', description='`people`, 256 train / 64 validation.',
                   variant='people', min_size=36, max_size=60, num_train=256, num_validation=64),
      # Dense captioning: at most 3 objects, mostly visible, so that every phrase stays true.
      ShapesConfig(name='captions', description='Named colours; a phrase per object, a caption.',
                   captions=True, max_objects=3, min_visible=0.6),
      ShapesConfig(name='captions_small', description='`captions`, 256 train / 64 validation.',
                   captions=True, max_objects=3, min_visible=0.6, num_train=256,
                   num_validation=64),
  ]
  DEFAULT_CONFIG_NAME = 'default'

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')
    super().__init__(**kwargs)

  @property
  def joints(self) -> JointSet | None:
    """The joint set of the keypoints (the pipeline reads it): LSP's for people, else none."""
    return LSP_14 if self.builder_config.variant == 'people' else None

  @property
  def vocab(self) -> captions.Vocabulary | None:
    """The vocabulary of the phrases (the pipeline reads it): `captions` variants only."""
    return captions.shapes_vocabulary(CLASS_NAMES[1:]) if self.builder_config.captions else None

  def _info(self) -> tfds.core.DatasetInfo:
    is_people = self.builder_config.variant == 'people'
    return self.dataset_info_from_configs(
        features=example_features(PEOPLE_CLASS_NAMES if is_people else CLASS_NAMES,
                                  joints=self.joints, phrases=self.builder_config.captions),
        # Record i is example i, so an index names one example in every tool.
        disable_shuffling=True,
        homepage='https://github.com/detseg-jax',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    return {'train': self._generate_examples('train', cfg.num_train),
            'validation': self._generate_examples('validation', cfg.num_validation)}

  def _generate_examples(self, split: str, num: int):
    for index in range(num):
      ex = render(self.builder_config, split, index)
      objects = {'box': ex['boxes'].reshape(-1, 4), 'label': ex['labels']}
      if 'keypoints' in ex:
        objects['keypoints'] = ex['keypoints']
      text = {}
      if 'phrases' in ex:
        objects['phrase'] = ex['phrases']
        text['caption'] = ex['caption']
      yield index, {
          'id': f'{split}_{index:06d}',
          'image': io.BytesIO(encode_png(ex['image'], compress_level=0)),
          'mask': io.BytesIO(encode_png(ex['mask'])),
          'instance_ids': io.BytesIO(encode_png(ex['instance_ids'])),
          'objects': objects,
          **text,
      }
