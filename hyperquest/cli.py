"""`python -m hyperquest serve | play | baseline`."""
import argparse
import dataclasses
import os

from hyperquest.rules import Settings


def _add_settings_flags(p):
  for f in dataclasses.fields(Settings):
    p.add_argument("--" + f.name.replace("_", "-"), type=int, default=None,
                   help=f"engine setting (default {f.default})")


def settings_from(args):
  kw = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
        if getattr(args, f.name, None) is not None}
  return Settings(**kw)


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m hyperquest", description=__doc__)
  sub = p.add_subparsers(dest="cmd", required=True)
  s = sub.add_parser("serve", help="run the web app on localhost")
  s.add_argument("--host", default="127.0.0.1")
  s.add_argument("--port", type=int, default=8000)
  s.add_argument("--data-dir", default=os.environ.get("HYPERQUEST_DATA", "runs/hyperquest"))
  s.add_argument("--workers", type=int, default=1, help="background training threads")
  _add_settings_flags(s)
  g = sub.add_parser("play", help="let an agent play sessions through the engine API")
  g.add_argument("--agent", choices=("random", "rules", "pbt"), required=True)
  g.add_argument("--sessions", type=int, default=20)
  g.add_argument("--population", type=int, default=4, help="pbt: sessions per population")
  g.add_argument("--seed", type=int, default=0)
  g.add_argument("--data-dir", default="runs/hyperquest_play")
  g.add_argument("--out", default=None, help="results table (markdown); default in data-dir")
  _add_settings_flags(g)
  b = sub.add_parser("baseline", help="compute and cache the baselines of the dataset pool")
  b.add_argument("--data-dir", default=os.environ.get("HYPERQUEST_DATA", "runs/hyperquest"))
  _add_settings_flags(b)
  args = p.parse_args(argv)
  settings = settings_from(args)

  if args.cmd == "serve":
    import uvicorn

    from hyperquest.web import create_app
    app = create_app(args.data_dir, settings, num_workers=args.workers)
    print(f"HyperQuest on http://{args.host}:{args.port}  (data: {args.data_dir})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
  elif args.cmd == "play":
    from hyperquest.agents import play
    out = args.out or os.path.join(args.data_dir, f"results_{args.agent}.md")
    play(args.agent, args.sessions, settings, args.data_dir, out, seed=args.seed,
         population=args.population)
  else:
    from hyperquest import Engine, Store
    engine = Engine(Store(os.path.join(args.data_dir, "hyperquest.sqlite")), settings)
    for i in range(settings.num_datasets):
      ds = settings.dataset_seed_base + i
      print(f"dataset {ds}: baseline {engine.ensure_baseline(ds):.4f}", flush=True)
