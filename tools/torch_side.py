"""Where the PyTorch half of the comparison tools (bench, parity) runs.

torch and torchvision are bench-only dependencies (requirements-bench.txt) kept out of the
project's venv; `make venv-bench` makes `.venv-bench` with them.
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_VENV_BENCH = os.path.join(REPO, '.venv-bench', 'bin', 'python')


def default_python() -> str:
  """$DETSEG_TORCH_PYTHON, else the repo's .venv-bench where it exists, else this Python."""
  return (os.environ.get('DETSEG_TORCH_PYTHON')
          or (_VENV_BENCH if os.path.exists(_VENV_BENCH) else sys.executable))
