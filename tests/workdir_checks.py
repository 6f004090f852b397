"""Checks on a trained workdir shared by the modules that train a model end to end."""
import json
import os

import numpy as np


def assert_first_step_trained(workdir: str):
  """Step 1 logged a finite loss and a nonzero gradient norm: the model's train step computes and
  its loss reaches the parameters. tests/test_configs.py only traces the configs checked so."""
  logged = [json.loads(x) for x in open(os.path.join(workdir, 'metrics.jsonl'))]
  first = next(x for x in logged if x['step'] == 1 and 'train/loss' in x)
  assert np.isfinite(first['train/loss']) and first['train/grad_norm'] > 0, first
