"""Sweep files expand as documented: grids, products, zips, seeded random draws, the examples."""
import glob
import math
import os

import pytest

from configs import loader
from sweeps import hyper
from training.population import non_vectorizable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(REPO, 'sweeps', '*.py')))
EXAMPLES = [p for p in EXAMPLES if os.path.basename(p) not in ('__init__.py', 'hyper.py')]


def test_product_varies_the_last_sweep_fastest():
  trials = hyper.product([hyper.sweep('optimizer.learning_rate', hyper.logspace(1e-4, 1e-2, 3)),
                          hyper.sweep('seed', [0, 1])])
  assert [t['seed'] for t in trials] == [0, 1, 0, 1, 0, 1]
  assert [t['optimizer.learning_rate'] for t in trials] == pytest.approx(
      [1e-4, 1e-4, 1e-3, 1e-3, 1e-2, 1e-2])


def test_zipit_pairs_elementwise_and_checks_lengths():
  trials = hyper.zipit([hyper.sweep('a', [1, 2]), hyper.sweep('b', ['x', 'y'])])
  assert trials == [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'y'}]
  with pytest.raises(ValueError, match='equal length'):
    hyper.zipit([hyper.sweep('a', [1, 2]), hyper.sweep('b', [1])])
  with pytest.raises(ValueError, match='swept twice: a'):
    hyper.product([hyper.sweep('a', [1]), hyper.fixed('a', 2)])


def test_grids_include_both_ends():
  assert hyper.linspace(0.0, 0.5, 3) == [0.0, 0.25, 0.5]
  assert hyper.logspace(1e-3, 1e-1, 3) == pytest.approx([1e-3, 1e-2, 1e-1])


def test_random_draws_are_in_range_and_reproducible():
  draws = hyper.loguniform(1e-5, 1e-1, 200, seed=3)
  assert draws == hyper.loguniform(1e-5, 1e-1, 200, seed=3)
  assert draws != hyper.loguniform(1e-5, 1e-1, 200, seed=4)
  assert all(1e-5 <= d < 1e-1 for d in draws) and all(isinstance(d, float) for d in draws)
  # Log-uniform: about a quarter of the draws in each decade.
  per_decade = [sum(10 ** -e <= d < 10 ** -(e - 1) for d in draws) for e in (5, 4, 3, 2)]
  assert min(per_decade) > 25
  assert all(0.1 <= d < 0.3 for d in hyper.uniform(0.1, 0.3, 20, seed=0))
  assert set(hyper.choice(['a', 'b'], 50, seed=0)) == {'a', 'b'}
  with pytest.raises(ValueError, match='0 < low < high'):
    hyper.loguniform(0.0, 1.0, 3)


@pytest.mark.parametrize('path', EXAMPLES, ids=os.path.basename)
def test_example_sweeps_load_and_override_the_config(path):
  trials = hyper.load(path)
  assert trials and all(isinstance(t, dict) for t in trials)
  config = loader.load(os.path.join(REPO, 'configs/seg/fcn8s_shapes.py'))
  for trial in trials:
    overridden = loader.override(config.copy_and_resolve_references(),
                                 [f'{k}={v}' for k, v in trial.items()])
    for key, value in trial.items():
      *parents, leaf = key.split('.')
      node = overridden
      for name in parents:
        node = node[name]
      assert node[leaf] == value


def test_example_files_expand_as_their_docstrings_say():
  by_name = {os.path.basename(p): hyper.load(p) for p in EXAMPLES}
  lrs = [t['optimizer.learning_rate'] for t in by_name['lr.py']]
  assert len(lrs) == 8 and lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(3e-2)
  assert all(math.isclose(b / a, lrs[1] / lrs[0]) for a, b in zip(lrs, lrs[1:], strict=False))
  assert not non_vectorizable(by_name['lr.py'][0]) and not non_vectorizable(
      by_name['lr_wd_random.py'][0])
  grid = by_name['upsample_seeds.py']
  assert len(grid) == 10 and non_vectorizable(grid[0]) == ['model.upsample']


def test_load_rejects_bad_sweep_files(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('def get_sweep():\n  return [{"seed": 0}, ["seed", 1]]\n')
  with pytest.raises(ValueError, match='trial 1'):
    hyper.load(str(bad))
  with pytest.raises(FileNotFoundError):
    hyper.load(str(tmp_path / 'missing.py'))
