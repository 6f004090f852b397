r"""Where a config's train and inference steps spend time and memory (XLA:CPU per-op profile).

  python -m tools.bench_profile --config configs/det/faster_rcnn_r50_fpn_coco.py \
      --image-size 800x1344 --set batch_size=1 --steps 1 --trace-dir /tmp/profile_r50fpn

Runs the steps of `tools/bench.py` (synthetic batch of the given size) under jax.profiler: the
perfetto trace (`--trace-dir`; open it in ui.perfetto.dev) has one event per HLO op executed.
Prints, per step, the ops with the most time summed over `--steps` calls (after a warm-up call),
each with its HLO opcode and the jax op / module path it came from (the HLO's op_name metadata);
time by opcode; XLA's memory analysis of the compiled step (arguments, outputs, temporaries) and
the process's RSS high-water mark. Thunks may run concurrently on XLA's threads, so op times can
add up to more than the wall time.
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import resource
import sys
import time

import jax

from tools import bench
from training import errors

_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = (\S+) .*?\b([a-z][\w\-]*)\(')
_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$')
_CALLS = re.compile(r'calls=%?([\w.\-]+)')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
# Wrappers that jax puts around op names (jit(...), jvp(...)) say nothing here; transpose(...)
# marks the backward pass, kept as a 'grad ' prefix.
_WRAPPER = re.compile(r'(?:jit|jvp|transpose|pjit|remat|checkpoint|vmap)\(([^()]*)\)')


def hlo_ops(hlo_text: str) -> dict:
  """HLO instruction name -> (opcode, output shape, where) for every instruction in `hlo_text`.

  `where` is the op_name metadata (the jax op and flax module path); a fusion without its own
  takes the most common one among the instructions it fuses (XLA:CPU's library fusions, e.g.
  ynn_fusion, carry none)."""
  ops, names, calls, computation = {}, collections.defaultdict(collections.Counter), {}, None
  for line in hlo_text.splitlines():
    header = _COMPUTATION.match(line)
    if header:
      computation = header[1]
      continue
    match = _INSTRUCTION.match(line)
    if match:
      where = _OP_NAME.search(line)
      ops[match[1]] = (match[3], match[2], _short(where[1]) if where else '')
      if where:
        names[computation][_short(where[1])] += 1
      called = _CALLS.search(line)
      if called:
        calls[match[1]] = called[1]
  for name, called in calls.items():
    opcode, shape, where = ops[name]
    if not where and names[called]:
      ops[name] = (opcode, shape, names[called].most_common(1)[0][0])
  return ops


def _short(op_name: str) -> str:
  grad = 'transpose(' in op_name
  previous = None
  while previous != op_name:
    previous, op_name = op_name, _WRAPPER.sub(r'\1', op_name)
  op_name = op_name.replace('FasterRCNN.detect_boxes/', '').split('/', 1)[-1]
  return ('grad ' if grad else '') + op_name


def op_times(trace_dir: str, names) -> collections.Counter:
  """Microseconds per HLO op name in the newest perfetto trace under `trace_dir`."""
  path = max(glob.glob(f'{trace_dir}/**/perfetto_trace.json.gz', recursive=True),
             key=os.path.getmtime)
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  times = collections.Counter()
  for event in events:
    if event.get('ph') == 'X' and event['name'] in names:
      times[event['name']] += event['dur']
  return times


def profile(jitted, args, steps: int, trace_dir: str, rebind=None, top: int = 12,
            reuse: bool = False) -> dict:
  """Compiles, warms up and traces `steps` calls into `trace_dir` (`reuse`: only compiles and
  reads the trace a previous run left there; the HLO op names of one program are stable)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  compile_s = time.perf_counter() - start
  ops = hlo_ops(compiled.as_text())
  out, wall_s = None, float('nan')
  if not reuse:
    out = jax.block_until_ready(compiled(*args))  # Warm-up.
    start = time.perf_counter()
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(steps):
        args = rebind(out) if rebind else args
        out = jax.block_until_ready(compiled(*args))
    wall_s = (time.perf_counter() - start) / steps
  times = op_times(trace_dir, ops)
  total = sum(times.values())
  by_opcode, by_kind = collections.Counter(), collections.Counter()
  for name, us in times.items():
    by_opcode[ops[name][0]] += us
    # XLA:CPU names a fusion by what runs it: ynn_fusion (YNNPACK: convolutions, dots),
    # copy_bitcast_fusion (layout copies), loop_fusion / input_fusion (elementwise, reductions).
    by_kind[re.sub(r'\.\d+$', '', name)] += us
  memory = compiled.memory_analysis()
  return {
      'compile_s': compile_s, 'wall_s': wall_s, 'op_s': total / 1e6 / steps,
      'top': [(name, *ops[name], us / 1e6 / steps, us / total) for name, us in
              times.most_common(top)],
      'by_opcode': [(k, us / 1e6 / steps, us / total) for k, us in by_opcode.most_common(8)],
      'by_kind': [(k, us / 1e6 / steps, us / total) for k, us in by_kind.most_common(8)],
      'memory_gb': {k: getattr(memory, f'{k}_size_in_bytes') / 1e9
                    for k in ('argument', 'output', 'temp', 'generated_code')},
      'out': out,
  }


def report(title: str, r: dict) -> str:
  lines = [f'### {title}: {r["wall_s"]:.2f} s/call wall, {r["op_s"]:.2f} s summed over ops, '
           f'compile {r["compile_s"]:.1f} s',
           'XLA memory analysis (GB): ' + ', '.join(f'{k} {v:.2f}'
                                                    for k, v in r['memory_gb'].items()),
           '', '| HLO op | opcode | output | s/call | share | from (op_name) |',
           '|---|---|---|---|---|---|']
  lines += [f'| {name} | {opcode} | {shape[:40]} | {s:.3f} | {share:.1%} | {where[-90:]} |'
            for name, opcode, shape, where, s, share in r['top']]
  lines += ['', '| opcode | s/call | share |', '|---|---|---|']
  lines += [f'| {k} | {s:.3f} | {share:.1%} |' for k, s, share in r['by_opcode']]
  lines += ['', '| HLO op kind | s/call | share |', '|---|---|---|']
  lines += [f'| {k} | {s:.3f} | {share:.1%} |' for k, s, share in r['by_kind']]
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', required=True, help='path.py[:args]')
  parser.add_argument('--set', action='append', default=[], help='override key=value; repeat')
  parser.add_argument('--image-size', type=bench.image_size, help='HxW, e.g. 800x1344')
  parser.add_argument('--steps', type=int, default=1, help='profiled calls after a warm-up')
  parser.add_argument('--trace-dir', default='/tmp/detseg_profile')
  parser.add_argument('--only', choices=('train', 'infer'))
  parser.add_argument('--reuse-trace', action='store_true',
                      help='do not run: compile and summarise the trace already in --trace-dir')
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  config = bench.load_config(args.config, args.set)
  run = bench.prepare(config, args.image_size)
  jitted, train_args, rebind = run['train']
  print(f'# {args.config} {" ".join(args.set)}, batch {config.batch_size}, image '
        f'{run["batch"]["image"].shape[1:3]}, {jax.devices()[0].platform}, jax {jax.__version__}')
  variables = None
  if args.only != 'infer':
    r = profile(jitted, train_args, args.steps, f'{args.trace_dir}/train', rebind,
                reuse=args.reuse_trace)
    print(report('train step', r), flush=True)
    if not args.reuse_trace:
      variables = run['parallel'].get_state(r.pop('out')[0]).variables
  if args.only != 'train':
    if variables is None:
      variables = run['parallel'].get_state(train_args[0]).variables
    eval_step, batch = run['infer']
    print(report('inference step', profile(eval_step, (variables, batch), args.steps,
                                           f'{args.trace_dir}/infer', reuse=args.reuse_trace)))
  print(f'peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB')


if __name__ == '__main__':
  sys.exit(errors.guard(main)())
