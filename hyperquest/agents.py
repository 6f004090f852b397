"""Agents that play HyperQuest through the same engine API as people: random, rules, pbt.

Sessions are grouped `population` at a time on one dataset (session i plays dataset group
i // population), so every agent meets the same datasets and can be compared fairly.
"""
import dataclasses
import hashlib
import json
import os
import random
import time

import numpy as np

from hyperquest import rules
from hyperquest.engine import Engine, RuleError
from hyperquest.store import Store


class RandomAgent:
  """Random stage-1 choice; then random moves, occasional reverts, rarely an early Done."""

  def configure(self, rng):
    return {k: rng.choice(v) for k, v in rules.STAGE1_CHOICES.items()}

  def decide(self, view, rng):
    if view["epochs"] >= 3 and rng.random() < 0.03:
      return "done", {}
    if view["can_revert"] and rng.random() < 0.1:
      return "revert", {}
    moves = {}
    for k in rules.HP_ORDER:
      allowed = [m for m in rules.MOVES if view["moves"][k][m] is not None]
      moves[k] = rng.choices(allowed, weights=[6 if m == "same" else 2 for m in allowed])[0]
    return "continue", moves


class RulesAgent:
  """A cautious human-like recipe: revert a collapse and lower lr, regularise overfitting,
  widen once early, anneal lr on a plateau."""

  def configure(self, rng):
    return {"width": 64, "lr": 0.01, "depth": 2, "dropout": 0.0}

  def decide(self, view, rng):
    hist = view["history"]
    live = [e for e in hist if not e["reverted"]]
    last = hist[-1]["metrics"]
    best = view["best_val"] or 0.0
    ok = lambda k, m: view["moves"][k][m] is not None
    if last["val_acc"] is None or last["train_loss"] is None or last["val_acc"] < best - 0.05:
      if not hist[-1]["reverted"] and view["can_revert"]:
        return "revert", {}
    if hist[-1]["reverted"]:  # just reverted: retry with a smaller step
      return "continue", {"lr": "down"} if ok("lr", "down") else {}
    moves = {}
    if len(live) == 2 and view["hp"]["width"] < 128:
      moves["width"] = "up"
    if last["train_acc"] - last["val_acc"] > 0.08:
      if ok("dropout", "up") and view["hp"]["dropout"] < 0.5:
        moves["dropout"] = "up"
      elif ok("wd", "up"):
        moves["wd"] = "up"
    vals = [e["metrics"]["val_acc"] or 0.0 for e in live]
    if len(vals) >= 3 and max(vals[-2:]) - max(vals[:-2]) < 0.01 and ok("lr", "down"):
      moves["lr"] = "down"
    return "continue", moves


def _play_one(engine, sid, agent, rng):
  engine.configure(sid, **agent.configure(rng))
  engine.run_pending(sid)
  while engine.view(sid)["status"] != "done":
    action, moves = agent.decide(engine.view(sid), rng)
    engine.act(sid, action, moves)
    engine.run_pending(sid)


def _play_pbt(engine, sids, rng, interval=2):
  """Population-based training (Jaderberg et al. 2017) over parallel sessions on one dataset:
  every `interval` epochs the worst member copies the best (exploit: weights, optimizer and
  hyperparameters) and perturbs lr / weight decay / dropout by one rung (explore)."""
  rand = RandomAgent()
  for sid in sids:
    engine.configure(sid, **rand.configure(rng))
    engine.run_pending(sid)
  while True:
    live = [s for s in sids if engine.view(s)["status"] != "done"]
    if not live:
      return
    for _ in range(interval):
      for s in live:
        if engine.view(s)["status"] == "ready":
          engine.act(s, "continue", {})
          engine.run_pending(s)
    views = {s: engine.view(s) for s in sids if engine.view(s)["status"] == "ready"}
    if len(views) < 2:
      continue
    score = {s: [e for e in v["history"] if not e["reverted"]][-1]["metrics"]["val_acc"] or 0.0
             for s, v in views.items()}
    ranked = sorted(views, key=score.get)
    worst, top = ranked[: max(1, len(ranked) // 4)], ranked[-max(1, len(ranked) // 4):]
    for s in worst:
      try:
        engine.exploit(s, rng.choice(top))
      except RuleError:
        continue
      v = engine.view(s)
      if v["status"] != "ready":
        continue
      moves = {k: rng.choice([m for m in ("up", "down") if v["moves"][k][m] is not None])
               for k in ("lr", "wd", "dropout")}
      engine.act(s, "continue", moves)
      engine.run_pending(s)


AGENTS = {"random": RandomAgent, "rules": RulesAgent}  # One session each; "pbt" plays a group.
NAMES = sorted([*AGENTS, "pbt"])


def play(agent_name, n_sessions, settings, data_dir, out, seed=0, population=4):
  """Plays n_sessions and writes a markdown results table to `out`; returns the rows."""
  if agent_name not in NAMES:
    raise ValueError(f"unknown agent {agent_name!r}; choose from {NAMES}")
  # Baselines depend on the settings, so each settings gets its own database.
  tag = hashlib.sha1(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
  db_dir = os.path.join(data_dir, tag.hexdigest()[:10])
  os.makedirs(db_dir, exist_ok=True)
  engine = Engine(Store(os.path.join(db_dir, "hyperquest.sqlite")), settings)
  name = f"agent-{agent_name}-{seed}-{int(time.time())}"
  pid = engine.store.add_player(name, "-", "-")
  rng = random.Random(seed * 7919 + NAMES.index(agent_name))
  groups = [list(range(i, min(i + population, n_sessions)))
            for i in range(0, n_sessions, population)]
  rows, t0 = [], time.time()
  for g, members in enumerate(groups):
    dataset = settings.dataset_seed_base + (seed + g) % settings.num_datasets
    baseline = engine.ensure_baseline(dataset)
    sids = [engine.new_session(pid, dataset=dataset, seed=seed * 1000 + i) for i in members]
    if agent_name == "pbt":
      _play_pbt(engine, sids, rng)
    else:
      for sid in sids:
        _play_one(engine, sid, AGENTS[agent_name](), rng)
    for sid in sids:
      v = engine.view(sid)
      rows.append({"session": sid, "dataset": dataset, "baseline": baseline,
                   "best_val": v["best_val"] or 0.0, "score": (v["best_val"] or 0.0) - baseline,
                   "epochs": v["epochs"], "actions": v["actions"], "end": v["end_reason"]})
      print(f"[{agent_name}] session {sid} dataset {dataset}: best {rows[-1]['best_val']:.3f} "
            f"baseline {baseline:.3f} -> {rows[-1]['score']:+.3f}", flush=True)
  scores = np.array([r["score"] for r in rows])
  lines = [f"# HyperQuest agent `{agent_name}`: {len(rows)} sessions "
           f"({time.time() - t0:.0f} s)", "",
           f"Settings: `{dataclasses.asdict(settings)}`", "",
           f"**Mean best-minus-baseline: {scores.mean():+.4f}** (std {scores.std():.4f})", "",
           "| session | dataset | baseline | best val | best - baseline | epochs | actions | end |",
           "|---|---|---|---|---|---|---|---|"]
  lines += [f"| {r['session']} | {r['dataset']} | {r['baseline']:.4f} | {r['best_val']:.4f} | "
            f"{r['score']:+.4f} | {r['epochs']} | {r['actions']} | {r['end']} |" for r in rows]
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
  print(f"mean best-minus-baseline {scores.mean():+.4f} over {len(rows)} sessions -> {out}")
  return rows
