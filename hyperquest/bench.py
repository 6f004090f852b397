"""Benchmarks: epoch time of the default configuration, and page latency under 10 players.

  python -m hyperquest.bench epoch            # one epoch of width 32 / depth 2 on 8500 images
  python -m hyperquest.bench load --players 10 --seconds 60   # against a local server only
"""
import argparse
import statistics
import tempfile
import threading
import time

import httpx


def bench_epoch(repeats):
  from hyperquest import model, trainer
  from hyperquest.rules import DEFAULT_HP, Settings
  settings = Settings()
  data = trainer.dataset(settings, settings.dataset_seed_base)
  state = trainer.fresh_state(DEFAULT_HP, seed=0)
  times = []
  for e in range(repeats + 1):  # the first epoch includes compilation
    t = time.perf_counter()
    params, opt, m = model.train_epoch(state["params"], state["opt"], data["train"], DEFAULT_HP,
                                       settings.batch_size, e)
    state = {"params": params, "opt": opt}
    train_s = time.perf_counter() - t
    m.update(model.evaluate(params, data["val"], DEFAULT_HP, settings.eval_batch_size))
    times.append((train_s, time.perf_counter() - t))
    print(f"epoch {e}: train {train_s:.2f} s, train+val {times[-1][1]:.2f} s, "
          f"val acc {m['val_acc']:.3f}{'  (includes compile)' if e == 0 else ''}", flush=True)
  steady = [t for _, t in times[1:]]
  print(f"default config epoch (train+val): mean {statistics.mean(steady):.2f} s, "
        f"max {max(steady):.2f} s over {repeats} epochs")


def bench_load(players, seconds, flags):
  from hyperquest.devtools import Player, Server
  data = tempfile.mkdtemp(prefix="hq_load_")
  server = Server(data, flags=flags)  # binds 127.0.0.1 only
  lat, lock, stop = [], threading.Lock(), time.time() + seconds
  epochs = [0]

  def timed(fn, *a, **kw):
    t = time.perf_counter()
    r = fn(*a, **kw)
    with lock:
      lat.append((time.perf_counter() - t, r.request.method, r.request.url.path, r.status_code))
    return r

  def run(i):
    try:
      play(i)
    except httpx.HTTPError as e:  # a timeout is a result, recorded as a failed request
      with lock:
        lat.append((99.0, "?", f"{type(e).__name__} {e.request.url.path}", 599))

  def play(i):
    with httpx.Client(base_url=server.url, timeout=30, follow_redirects=True) as c:
      c.get, c.post = (lambda f: lambda *a, **k: timed(f, *a, **k))(c.get), \
                      (lambda f: lambda *a, **k: timed(f, *a, **k))(c.post)
      p = Player(c, f"load{i}")
      p.register_and_survey()
      p.start()
      while time.time() < stop:
        c.get(f"/session/{p.sid}")
        if c.get(f"/session/{p.sid}/status").json()["status"] == "ready":
          p.act("continue", lr="same")
          with lock:
            epochs[0] += 1
        c.get("/leaderboard")
        time.sleep(0.5)

  threads = [threading.Thread(target=run, args=(i,)) for i in range(players)]
  try:
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  finally:
    server.stop()
  secs = sorted(x[0] for x in lat)
  bad = [x for x in lat if x[3] >= 500]
  print(f"{players} players, {seconds} s: {len(lat)} requests, {epochs[0]} epochs queued by "
        f"Continue; latency p50 {secs[len(secs) // 2] * 1000:.0f} ms, p95 "
        f"{secs[int(len(secs) * 0.95)] * 1000:.0f} ms, max {secs[-1] * 1000:.0f} ms; "
        f"{sum(s >= 1.0 for s in secs)} requests >= 1 s; {len(bad)} server errors")
  slow = sorted(lat, key=lambda x: -x[0])[:5]
  print("slowest:", [(f"{s * 1000:.0f} ms", m, path) for s, m, path, _ in slow])


def main():
  p = argparse.ArgumentParser()
  sub = p.add_subparsers(dest="cmd", required=True)
  e = sub.add_parser("epoch")
  e.add_argument("--repeats", type=int, default=3)
  ld = sub.add_parser("load")
  ld.add_argument("--players", type=int, default=10)
  ld.add_argument("--seconds", type=int, default=60)
  args = p.parse_args()
  if args.cmd == "epoch":
    bench_epoch(args.repeats)
  else:
    bench_load(args.players, args.seconds, [])


if __name__ == "__main__":
  main()
