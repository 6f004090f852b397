"""Region phrases and their vocabulary: Shapes' procedural phrases, token ids, flips.

Token ids: PAD 0, START 1, END 2, UNK 3, words from 4. A sequence is `w1 .. wk END PAD ..`, int32
[T] with T = `Vocabulary.max_len` (static shapes); decoders build their START-shifted inputs.

Shapes `captions` scenes use named colours so that every object has a phrase the image supports:
"a small red circle left of a large blue square" (size, colour, shape, and where the object is
relative to its nearest neighbour); the image caption lists the objects, largest first
("a blue square and a red circle"), so a horizontal flip leaves it unchanged. A flip swaps
"left" and "right" in the region phrases (`Vocabulary.flip_permutation`).

Where the word lists live: Shapes' is closed and built here (`shapes_vocabulary`); Visual Genome's
comes from its training phrases and is stored in the prepared dataset's metadata.json
(`data/visual_genome.py`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ops.tokens import END, PAD, SPECIAL, START, UNK

# Named colours, far enough apart to be told apart on any of Shapes' backgrounds (sRGB).
COLOURS = {
    'red': (215, 40, 40), 'green': (40, 170, 60), 'blue': (45, 80, 225),
    'yellow': (240, 215, 40), 'white': (245, 245, 245), 'black': (15, 15, 15),
}
SIZES = ('small', 'large')
RELATIONS = ('left of', 'right of', 'above', 'below')


class Vocabulary:
  """Words <-> int32 ids with the special tokens first; `max_len` = T of encoded sequences."""

  def __init__(self, words: Sequence[str], max_len: int):
    self.words = tuple(SPECIAL) + tuple(w for w in words if w not in SPECIAL)
    self.index = {w: i for i, w in enumerate(self.words)}
    self.max_len = int(max_len)

  def __len__(self) -> int:
    return len(self.words)

  def encode(self, text: str) -> np.ndarray:
    """int32 [T]: the words (lower-cased; unknown ones -> UNK), END, then PAD; truncated to T."""
    ids = [self.index.get(w, UNK) for w in text.lower().split()][:self.max_len - 1] + [END]
    out = np.zeros((self.max_len,), np.int32)
    out[:len(ids)] = ids
    return out

  def encode_all(self, texts: Sequence[str]) -> np.ndarray:
    """int32 [len(texts), T]."""
    return np.stack([self.encode(t) for t in texts]) if len(texts) else np.zeros(
        (0, self.max_len), np.int32)

  def decode(self, ids) -> str:
    """The words up to the first END (PAD and START skipped)."""
    words = []
    for i in np.asarray(ids).reshape(-1).tolist():
      if i == END:
        break
      if i not in (PAD, START):
        words.append(self.words[i] if 0 <= i < len(self.words) else SPECIAL[UNK])
    return ' '.join(words)

  def flip_permutation(self) -> np.ndarray:
    """int32 [V]: token ids after a horizontal flip ('left' <-> 'right', the rest unchanged)."""
    perm = np.arange(len(self), dtype=np.int32)
    if 'left' in self.index and 'right' in self.index:
      left, right = self.index['left'], self.index['right']
      perm[left], perm[right] = right, left
    return perm


def shapes_vocabulary(shape_names: Sequence[str]) -> Vocabulary:
  """The closed vocabulary of Shapes phrases (T = 12: the longest phrase has 10 words + END)."""
  words = ['a', 'and', *SIZES, *COLOURS, *shape_names]
  for relation in RELATIONS:
    words += [w for w in relation.split() if w not in words]
  return Vocabulary(words, max_len=12)


def pick_colour(rng: np.random.Generator, avoid: np.ndarray) -> tuple[str, np.ndarray]:
  """A named colour far from every colour in `avoid` [N, 3]: random among the 3 farthest."""
  names = list(COLOURS)
  rgb = np.asarray([COLOURS[n] for n in names], np.float32)
  dist = np.linalg.norm(rgb[:, None] - np.asarray(avoid, np.float32)[None], axis=2).min(axis=1)
  name = names[int(rng.choice(np.argsort(-dist)[:3]))]
  return name, np.asarray(COLOURS[name], np.float32)


def _relation(box: np.ndarray, other: np.ndarray) -> str:
  """Where `box` is relative to `other` along the axis their centres differ most."""
  dy = (box[0] + box[2] - other[0] - other[2]) / 2
  dx = (box[1] + box[3] - other[1] - other[3]) / 2
  if abs(dx) >= abs(dy):
    return 'left of' if dx < 0 else 'right of'
  return 'above' if dy < 0 else 'below'


def shapes_phrases(boxes: np.ndarray, shape_names: Sequence[str], colours: Sequence[str],
                   sizes: Sequence[str]) -> tuple[list[str], str]:
  """(one phrase per object, the image caption) of a Shapes scene.

  boxes [K, 4] (y1, x1, y2, x2); the other arguments name each object's shape, colour and size.
  An object's phrase relates it to its nearest neighbour (centre distance), if it has one.
  """
  nouns = [f'{c} {s}' for c, s in zip(colours, shape_names, strict=True)]
  centres = (boxes[:, :2] + boxes[:, 2:]) / 2
  phrases = []
  for k in range(len(boxes)):
    phrase = f'a {sizes[k]} {nouns[k]}'
    if len(boxes) > 1:
      dist = np.linalg.norm(centres - centres[k], axis=1)
      dist[k] = np.inf
      j = int(np.argmin(dist))
      phrase += f' {_relation(boxes[k], boxes[j])} a {sizes[j]} {nouns[j]}'
    phrases.append(phrase)
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  caption = ' and '.join(f'a {nouns[k]}' for k in np.argsort(-area, kind='stable'))
  return phrases, caption
