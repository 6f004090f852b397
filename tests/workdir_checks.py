"""Checks on a trained workdir shared by the modules that train a model end to end."""
import json
import os

import numpy as np

# The eval split of the end-to-end tests: 16 of the small Shapes variant's 64 validation images.
# The tests check that evaluation runs and writes its metrics and overlays, not their values; the
# other 48 images cost Mask R-CNN's test 3.7 s of its 31 s (user CPU, empty compile cache).
EVAL_SPLIT = 'validation[:16]'


def assert_first_step_trained(workdir: str):
  """Step 1 logged a finite loss and a nonzero gradient norm: the model's train step computes and
  its loss reaches the parameters. tests/test_configs.py only traces the configs checked so."""
  logged = [json.loads(x) for x in open(os.path.join(workdir, 'metrics.jsonl'))]
  first = next(x for x in logged if x['step'] == 1 and 'train/loss' in x)
  assert np.isfinite(first['train/loss']) and first['train/grad_norm'] > 0, first
