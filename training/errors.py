"""User errors: one line naming the problem and the fix, exit code 2; bugs keep their traceback.

Mistakes in the command line, the config or the workdir raise `UserError`. The programs' mains
are wrapped: `run(main)` for absl programs (train.py, eval.py), `guard(main)` for argparse tools.
They print a user error as one line `error: ...` on stderr and exit with 2; `--verbose` or
DETSEG_VERBOSE=1 prints the traceback too. Any other exception is a bug and keeps its traceback.
"""
import contextlib
import os
import sys
import traceback

from absl import app, flags

from configs import loader

EXIT_CODE = 2
VERBOSE_ENV = 'DETSEG_VERBOSE'


class UserError(ValueError):
  """A mistake in the user's input. The message names the problem and the fix, on one line.

  A ValueError, so that callers (and tests) that catch the checks' ValueErrors still do."""


def message(error: BaseException) -> str:
  # A KeyError's str() is the repr of its argument: quotes and escaped newlines.
  text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  return ' '.join(str(text).split())


@contextlib.contextmanager
def user_input(types=(ValueError, KeyError, OSError)):
  """Raises the `types` raised inside as UserErrors: wraps checks of names, sizes and paths,
  whose exceptions are the user's mistakes, not bugs."""
  try:
    yield
  except UserError:
    raise
  except types as e:
    raise UserError(message(e)) from e


def verbose(argv=None) -> bool:
  argv = sys.argv if argv is None else argv
  flag = any(a in ('--verbose', '--verbose=true', '--verbose=1') for a in argv)
  return flag or os.environ.get(VERBOSE_ENV, '') not in ('', '0')


def report(error: BaseException, argv=None) -> int:
  """Prints a user error (with its traceback if verbose); returns the exit code."""
  if verbose(argv):
    traceback.print_exception(error)
  hint = '' if verbose(argv) else f' (--verbose or {VERBOSE_ENV}=1: traceback)'
  print(f'error: {message(error)}{hint}', file=sys.stderr, flush=True)
  return EXIT_CODE


def add_verbose_flag(parser):
  """--verbose for an argparse tool whose main is wrapped by `guard`."""
  parser.add_argument('--verbose', action='store_true',
                      help=f'show tracebacks of user errors (or {VERBOSE_ENV}=1)')


def guard(main):
  """`main(argv)` with user errors reported as one line and exit code 2 (argparse tools)."""
  def guarded(argv=None):
    try:
      return main(argv)
    except UserError as e:
      sys.exit(report(e, argv))
  return guarded


def _flag_value(argv, name: str):
  """The value of --name=V or --name V in argv (None if absent)."""
  for i, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      return arg.split('=', 1)[1]
    if arg == f'--{name}' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def check_config_args(argv, name: str = 'config'):
  """Loads the config file named by --config and checks that every --config.a.b override names
  an existing field, so a typo fails listing that node's fields (absl's messages do not)."""
  spec = _flag_value(argv, name)
  if spec is None:
    return
  with user_input():
    config = loader.load(spec)
    keys = [a[len(name) + 3:].partition('=')[0] for a in argv if a.startswith(f'--{name}.')]
    loader.check_fields(config, keys)


def _parse_flags(argv):
  try:
    check_config_args(argv)
    return flags.FLAGS(argv)
  except (UserError, flags.Error) as e:
    sys.exit(report(e, argv))


def run(main):
  """absl's app.run(main) with one-line user errors, including those in the flags."""
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool('verbose', False, f'Show tracebacks of user errors (or {VERBOSE_ENV}=1).')
  app.run(guard(main), flags_parser=_parse_flags)
