"""Imports run one way (CONTRACTS.md "Layers"), and loading a config imports no jax.

The layers, each importing only those below it (and its own package):
ops < models, losses, metrics, data < tasks < training < train.py, eval.py, tools/.
configs/ and sweeps/ import no package of ours but their own (configs: only ml_collections and
its absl besides the standard library); training/ and above read them. hyperquest/ imports none
of ours.
"""
import ast
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {'ops': 0, 'models': 1, 'losses': 1, 'metrics': 1, 'data': 1, 'tasks': 2, 'training': 3,
          'train': 4, 'eval': 4, 'tools': 4}
OURS = set(LAYERS) | {'configs', 'sweeps', 'hyperquest', 'tests'}
# Packages that stand apart from the layers: what they may import of ours, besides themselves.
APART = {'configs': set(), 'sweeps': set(), 'hyperquest': set()}


def _modules() -> list[str]:
  out = []
  for root, dirs, files in os.walk(REPO):
    dirs[:] = [d for d in dirs if not d.startswith('.') and d not in ('runs', '__pycache__')]
    out += [os.path.relpath(os.path.join(root, f), REPO) for f in files if f.endswith('.py')]
  return sorted(p for p in out if p.split(os.sep)[0] != 'tests')


def _imports(path: str) -> list[tuple[int, str]]:
  """(line, top-level name) of every absolute import in the file, wherever it stands."""
  with open(os.path.join(REPO, path)) as f:
    tree = ast.parse(f.read(), path)
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node.lineno, a.name.split('.')[0]) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found.append((node.lineno, node.module.split('.')[0]))
  return found


def _violation(package: str, imported: str) -> bool:
  if imported == package or imported not in OURS:
    return False
  if package in APART:
    return imported not in APART[package]
  if imported in ('configs', 'sweeps'):  # Plain data: any layer that needs a config may read it.
    return LAYERS[package] < LAYERS['training']
  if imported not in LAYERS:
    return True
  return LAYERS[imported] >= LAYERS[package] and not (
      LAYERS[package] == LAYERS['tools'] and imported == 'tools')


def test_imports_follow_the_layer_order():
  problems = []
  for path in _modules():
    package = path.split(os.sep)[0].removesuffix('.py')
    if package not in LAYERS and package not in APART:
      continue
    for line, imported in _imports(path):
      if _violation(package, imported):
        problems.append(f'{path}:{line} imports {imported}')
  assert not problems, 'imports against the layer order:\n' + '\n'.join(problems)


def test_the_checker_sees_imports_and_flags_upward_ones():
  assert 'ops' in {name for _, name in _imports(os.path.join('models', 'ssd.py'))}
  assert _violation('models', 'data') and _violation('ops', 'models')
  assert _violation('training', 'tools') and _violation('configs', 'data')
  assert not _violation('tasks', 'models') and not _violation('training', 'configs')


def test_configs_import_only_ml_collections():
  # absl: configs/loader.py parses overrides with ml_collections' config flags (absl flags).
  stdlib = set(sys.stdlib_module_names)
  problems = [f'{path}:{line} imports {name}' for path in _modules()
              if path.startswith('configs' + os.sep)
              for line, name in _imports(path)
              if name not in stdlib | {'ml_collections', 'absl', 'configs'}]
  assert not problems, '\n'.join(problems)


def test_loading_every_config_imports_no_jax():
  code = ('import sys\nfrom configs import loader\n'
          'for p in loader.all_config_files():\n'
          "  loader.load(p + ':runlocal'); loader.load(p)\n"
          "print(sorted({'jax', 'tensorflow', 'grain', 'cv2'} & set(sys.modules)))")
  out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == '[]'
