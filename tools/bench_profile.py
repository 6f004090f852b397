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

  python -m tools.bench_profile --config configs/det/faster_rcnn_r50_fpn_coco.py \
      --image-size 800x1344 --set batch_size=2 --only train --live-at-peak 30

`--live-at-peak N` runs nothing: it compiles the steps with XLA's dumps and lists the N largest
values alive where the heap peaks (from the scheduled module and its buffer live ranges): what
to shrink, free earlier or chunk to lower the peak, where `temp` above only gives the total.

  python -m tools.bench_profile --config configs/det/faster_rcnn_r50_fpn_coco.py \
      --image-size 800x1344 --set batch_size=1 --only train --compile-phases

`--compile-phases` runs nothing either: it traces XLA's compile of each step and splits its wall
time into phases (HLO passes, kernel emission, LLVM), with the kernels' count and CPU time (XLA:CPU
emits and compiles one LLVM module per fusion, on its codegen threads) and the compiled kernels
per model part (forward / grad): where a long compile comes from and what fewer kernels would buy.
"""
import argparse
import collections
import glob
import gzip
import json
import math
import os
import re
import resource
import sys
import tempfile
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


_ELEMENT_BYTES = {'pred': 1, 's8': 1, 'u8': 1, 'bf16': 2, 'f16': 2, 's16': 2, 'u16': 2, 'f32': 4,
                  's32': 4, 'u32': 4, 'f64': 8, 's64': 8, 'u64': 8}
_ARRAY = re.compile(r'\b(' + '|'.join(_ELEMENT_BYTES) + r')\[([\d,]*)\]')
_LIVE_RANGE = re.compile(r'^\s+(\S+)\{([\d,]*)\}:(\d+)-(\d+)$')
# Values that own no temporary buffer: inputs and constants live outside XLA's temporaries;
# bitcasts, tuples and their elements alias the buffers they name.
_NO_BUFFER = ('parameter', 'constant', 'bitcast', 'get-tuple-element', 'tuple')


def live_at_peak(hlo_text: str, live_ranges: str, top: int = 30) -> tuple[int, list]:
  """The largest values alive at the heap's peak, from a scheduled module's text and its buffer
  live ranges (the `...-live-range.txt` of `--xla_dump_to`): (peak bytes, [(bytes, first, last,
  name, shape, where)]). The peak is where the live values' bytes sum highest; XLA packs them
  into its temporaries with some fragmentation, so `temp` is a little higher.
  """
  values = {}
  for line in hlo_text.splitlines():
    match = _INSTRUCTION.match(line)
    if match and match[3] not in _NO_BUFFER:
      shape = line.split(' = ', 1)[1].split(f' {match[3]}(', 1)[0]
      sizes = [_ELEMENT_BYTES[t] * math.prod(int(d) for d in dims.split(',') if d)
               for t, dims in _ARRAY.findall(shape)]
      where = _OP_NAME.search(line)
      values[match[1]] = (sizes, shape, _short(where[1]) if where else '')
  ranges = []
  for line in live_ranges.splitlines():
    match = _LIVE_RANGE.match(line)
    if match and match[1] in values:
      sizes, shape, where = values[match[1]]
      index = int(match[2].split(',')[0]) if match[2] else 0
      if index < len(sizes):
        ranges.append((sizes[index], int(match[3]), int(match[4]), match[1], shape, where))
  if not ranges:
    return 0, []
  change = collections.Counter()
  for size, first, last, *_ in ranges:
    change[first] += size
    change[last + 1] -= size
  live, peak, at = 0, -1, 0
  for point in sorted(change):
    live += change[point]
    if live > peak:
      peak, at = live, point
  alive = sorted((r for r in ranges if r[1] <= at <= r[2]), key=lambda r: -r[0])
  return peak, alive[:top]


def dumped_module(jitted, args, dump_dir: str) -> tuple[str, str]:
  """Compiles `jitted` for `args` with XLA's dumps into `dump_dir`: (the scheduled module's text,
  its buffer live ranges)."""
  jitted.lower(*args).compile({'xla_dump_to': dump_dir, 'xla_dump_hlo_as_text': True})
  paths = sorted(glob.glob(f'{dump_dir}/*after_optimizations-live-range.txt'),
                 key=os.path.getmtime)
  if not paths:
    raise errors.UserError(f'XLA wrote no live ranges to {dump_dir}; this backend may not dump '
                           'them (XLA:CPU does).')
  with open(paths[-1]) as f:
    live_ranges = f.read()
  with open(paths[-1].replace('-live-range.txt', '.txt')) as f:
    return f.read(), live_ranges


def live_report(title: str, peak: int, alive: list) -> str:
  lines = [f'### {title}: {peak / 2**30:.2f} GiB of values alive at the peak; the largest:', '',
           '| MiB | live (schedule positions) | value | shape | from (op_name) |',
           '|---|---|---|---|---|']
  lines += [f'| {size / 2**20:.1f} | {first}-{last} | {name} | {shape[:48]} | {where[-80:]} |'
            for size, first, last, name, shape, where in alive]
  return '\n'.join(lines)


def _short(op_name: str) -> str:
  grad = 'transpose(' in op_name
  previous = None
  while previous != op_name:
    previous, op_name = op_name, _WRAPPER.sub(r'\1', op_name)
  op_name = op_name.replace('FasterRCNN.detect_boxes/', '').split('/', 1)[-1]
  return ('grad ' if grad else '') + op_name


def _trace_events(trace_dir: str) -> list:
  """The events of the newest perfetto trace under `trace_dir`."""
  path = max(glob.glob(f'{trace_dir}/**/perfetto_trace.json.gz', recursive=True),
             key=os.path.getmtime)
  with gzip.open(path) as f:
    trace = json.load(f)
  return trace['traceEvents'] if isinstance(trace, dict) else trace


def op_times(trace_dir: str, names) -> collections.Counter:
  """Microseconds per HLO op name in the newest perfetto trace under `trace_dir`, from each call's
  start to its end.

  XLA:CPU runs some ops asynchronously (its own convolutions on Eigen's thread pool, loops split
  over threads): their event ends when the work is handed out, and an 'end: NAME' event marks
  when it finished. Counting the first event alone left FCN-8s's Eigen convolutions at 0.05 ms
  where they took 8-30 ms (2026-12-07). Async ops can overlap others, so the times may sum to
  more than the step.
  """
  times, started = collections.Counter(), {}
  for event in sorted((e for e in _trace_events(trace_dir) if e.get('ph') == 'X'),
                      key=lambda e: e['ts']):
    name = event['name']
    if name in names:
      times[name] += event['dur']
      started[name] = event['ts'] + event['dur']
    elif name.startswith('end: ') and name[5:] in started:
      times[name[5:]] += event['ts'] + event['dur'] - started.pop(name[5:])
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


# XLA:CPU's compile events (jax 0.10's jaxlib): the compiler thread's phases, and per kernel
# its MLIR emission and its LLVM optimisation + machine code, run on the codegen threads.
_PHASES = ('HLO passes', 'ThunkEmitter::EmitEntryComputation', 'ThunkEmitter::ConsumeKernels',
           'JitCompiler::Compile', 'CpuCompiler::RunBackend')
_PER_KERNEL = {'FusionCompiler::Compile': 'emit (MLIR)',
               'TaskDispatcher::dispatch': 'LLVM optimise + codegen'}
_KERNEL_KIND = re.compile(r'kind=k(Loop|Input|Output)\b')
_METADATA = re.compile(r', metadata=\{[^}]*\}')
_NAME = re.compile(r'%[\w.\-]+')


def compile_phases(jitted, args, trace_dir: str) -> dict:
  """Compiles `jitted` under the profiler: wall seconds, the phases' and per-kernel events' times,
  and the compiled kernels per model part."""
  lowered = jitted.lower(*args)
  options = jax.profiler.ProfileOptions()
  options.host_tracer_level = 3  # XLA's compiler-internal events.
  cache = jax.config.jax_enable_compilation_cache
  jax.config.update('jax_enable_compilation_cache', False)  # Measure a compile, not a load.
  try:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True, profiler_options=options):
      start = time.perf_counter()
      compiled = lowered.compile()
      wall_s = time.perf_counter() - start
  finally:
    jax.config.update('jax_enable_compilation_cache', cache)
  phases, kernels = collections.Counter(), collections.defaultdict(list)
  for event in _trace_events(trace_dir):
    name = event.get('name', '') if event.get('ph') == 'X' else ''
    if name in _PER_KERNEL:
      kernels[_PER_KERNEL[name]].append(event['dur'] / 1e6)
    elif name.startswith(_PHASES):
      phases[name.split(' (')[0]] += event['dur'] / 1e6
  return {'wall_s': wall_s, 'phases': phases, 'kernels': kernels,
          'parts': kernels_by_part(compiled.as_text())}


def kernels_by_part(hlo_text: str) -> collections.Counter:
  """The compiled program's kernels (fusions it calls, equal ones once) per model part."""
  bodies, calls, computation = collections.defaultdict(list), [], ''
  for line in hlo_text.splitlines():
    header = _COMPUTATION.match(line)
    if header:
      computation = header[1]
    elif line.strip() and line.strip() != '}':
      bodies[computation].append(_METADATA.sub('', line.split('=', 1)[-1]))
      # Fusions nested in a fusion are part of its kernel.
      if ('fused' not in computation and not computation.endswith('_computation')
          and ' fusion(' in line and _KERNEL_KIND.search(line)):
        calls.append((_CALLS.search(line)[1], _model_part(_OP_NAME.search(line))))
  # XLA:CPU compiles equal fusions once: count each fused computation's text once.
  seen, parts = set(), collections.Counter()
  for called, part in calls:
    body = _NAME.sub('%', '\n'.join(bodies[called]))
    if body not in seen:
      seen.add(body)
      parts[part] += 1
  return parts


def _model_part(op_name) -> str:
  """'grad backbone', 'rpn', ... : the flax submodule under the model a kernel came from (else
  the jax op, e.g. the optimizer's)."""
  short = _short(op_name[1]) if op_name else '(none)'
  grad, path = short.startswith('grad '), short.removeprefix('grad ').split('/')
  while len(path) > 1 and path[0][:1].isupper():  # The model's class and method names.
    path = path[1:]
  return ('grad ' if grad else '') + (path[0] or '(unnamed)')


def compile_report(title: str, r: dict, top: int = 12) -> str:
  lines = [f'### {title}: XLA compile {r["wall_s"]:.1f} s wall', '',
           '| phase (compiler thread; RunBackend holds the thunk emission and LLVM) | s |',
           '|---|---|']
  lines += [f'| {name} | {s:.2f} |' for name, s in r['phases'].most_common()]
  lines += ['', '| per kernel (codegen threads) | kernels | CPU s | ms each: median / max | '
            'CPU s in kernels over 100 ms |', '|---|---|---|---|---|']
  for name, times in r['kernels'].items():
    times = sorted(times)
    lines.append(f'| {name} | {len(times)} | {sum(times):.2f} | {times[len(times) // 2] * 1e3:.0f}'
                 f' / {times[-1] * 1e3:.0f} | {sum(t for t in times if t > 0.1):.2f} |')
  lines += ['', f'| model part | compiled kernels (of {sum(r["parts"].values())}) |', '|---|---|']
  lines += [f'| {part} | {n} |' for part, n in r['parts'].most_common(top)]
  return '\n'.join(lines)


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
  mode = parser.add_mutually_exclusive_group()  # Each replaces the profiled run.
  mode.add_argument('--reuse-trace', action='store_true',
                    help='do not run: compile and summarise the trace already in --trace-dir')
  mode.add_argument('--live-at-peak', type=int, metavar='N',
                    help='do not run: list the N largest values alive at the heap peak')
  mode.add_argument('--compile-phases', action='store_true',
                    help='do not run: where each step\'s XLA compile time goes')
  errors.add_verbose_flag(parser)
  args = parser.parse_args(argv)
  if args.live_at_peak is not None and args.live_at_peak < 1:
    parser.error(f'--live-at-peak {args.live_at_peak}: give the number of values to list, >= 1')
  config = bench.load_config(args.config, args.set)
  run = bench.prepare(config, args.image_size)
  jitted, train_args, rebind = run['train']
  print(f'# {args.config} {" ".join(args.set)}, batch {config.batch_size}, image '
        f'{run["batch"]["image"].shape[1:3]}, {jax.devices()[0].platform}, jax {jax.__version__}')
  if args.live_at_peak or args.compile_phases:
    eval_step, batch = run['infer']
    steps = {'train': ('train step', jitted, train_args),
             'infer': ('inference step', eval_step,
                       (run['parallel'].get_state(train_args[0]).variables, batch))}
    for key, (title, step, step_args) in steps.items():
      if args.only not in (None, key):
        continue
      if args.compile_phases:
        trace_dir = f'{args.trace_dir}/compile_{key}'
        print(compile_report(title, compile_phases(step, step_args, trace_dir)), flush=True)
      else:
        with tempfile.TemporaryDirectory() as dump_dir:
          peak, alive = live_at_peak(*dumped_module(step, step_args, dump_dir), args.live_at_peak)
        print(live_report(title, peak, alive), flush=True)
    return
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
