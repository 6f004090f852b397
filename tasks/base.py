"""The task contract that train.py, eval.py and training/ rely on, and what every task shares.

A task bundles, for one `config.task`: the model (`build_model`: `config.model.name` with the
rest of `config.model` and the task's `model_kwargs()` as keywords), what the model reads of a
batch (`model_inputs(batch) -> (args, kwargs)`), the pure loss `loss(outputs, batch) ->
(scalar, aux)`, `postprocess(outputs, batch)` (inside the jitted eval step: outputs ->
predictions), an evaluator (`make_evaluator()`: `add(batch, predictions)`, `result() -> dict`)
and overlay pictures (`visualize`, which calls `draw_example` once per real example).

A subclass sets `name`, checks what it needs in `setup()` and implements `loss`, `postprocess`,
`make_evaluator` and `draw_example`; it overrides `model_kwargs` / `model_inputs` when its model
takes more than `config.model` and the image.
"""
import os

import ml_collections
import numpy as np

import data
import models


def freeze_backbone(config) -> bool:
  """Whether `config.init.freeze_backbone` asks for a fixed backbone (configs before it: no).

  The optimizer then leaves the `backbone` module alone (training/pretrained.frozen_modules);
  models with a `frozen_backbone` field also run its batch norm on running statistics.
  """
  return bool(config.get('init', {}).get('freeze_backbone', False))


class Task:
  name: str
  # The per-pixel targets its batches carry (data.pipeline.PIXEL_TARGETS): 'mask' (semantic),
  # 'instances' (instance masks). Elements leave out the others: at 800x1333 each is ~1 MiB.
  pixel_targets: tuple[str, ...] = ()

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.info = data.dataset_info(config.data)
    self.num_classes = self.info['num_classes']  # Including background, as in the batches.
    self.setup()
    self.model = self.build_model()  # Unknown model names and bad fields fail here.

  def setup(self) -> None:
    """The task's own checks of config and dataset, before the model is built."""

  def model_kwargs(self) -> dict:
    """Keywords the task adds to `config.model`'s (sizes that come from the dataset)."""
    return {}

  def build_model(self, bn_axis_name=None, **extra):
    """config.model.name built with the rest of config.model, then `model_kwargs()` and `extra`
    (later ones win: e.g. the dataset's joint count over the config's)."""
    kwargs = {k: v for k, v in self.config.model.items() if k != 'name'}
    return models.get_model(self.config.model.name, bn_axis_name=bn_axis_name,
                            **{**kwargs, **self.model_kwargs(), **extra})

  def model_inputs(self, batch):
    """(args, kwargs) of `model.apply` after the variables (and before `train=`)."""
    return (batch['image'],), {}

  def loss(self, outputs, batch):
    raise NotImplementedError

  def postprocess(self, outputs, batch):
    raise NotImplementedError

  def make_evaluator(self):
    raise NotImplementedError

  def visualize(self, batch, predictions, out_dir: str, *, max_images: int, start: int = 0):
    """Writes `overlay_NNN.png` for the batch's first real examples; returns how many."""
    count = min(max_images, int(np.sum(batch['example_valid'])))
    for i in range(count):
      self.draw_example(batch, predictions, i,
                        os.path.join(out_dir, f'overlay_{start + i:03d}.png'))
    return count

  def draw_example(self, batch, predictions, i: int, path: str) -> None:
    """Writes the overlay PNG of example i of the batch to `path`."""
    raise NotImplementedError
