"""The HyperQuest session state machine (no web code).

Session status: 'stage1' (choose the initial configuration) -> 'queued' (an epoch waits for a
worker) -> 'ready' (the player picks the next action) -> ... -> 'done'.
Checkpoint position 0 is the untrained stage-1 network; position k is the network after the k-th
epoch of the live line. Revert pops the top position (its epoch stays in the record, marked
reverted, and still counts toward the epoch budget). Every state change is one SQLite transaction.
"""
import json
import random
import threading
import time

import numpy as np

from hyperquest import rules, trainer
from hyperquest.rules import HP_ORDER, LADDERS, STAGE1_CHOICES, Settings


class RuleError(ValueError):
  """An action the rules do not allow (the message is shown to the player)."""


class Engine:

  def __init__(self, store, settings=None):
    self.store = store
    self.settings = settings or Settings()
    self._locks = {}
    self._locks_guard = threading.Lock()

  def _lock(self, key):
    with self._locks_guard:
      return self._locks.setdefault(key, threading.Lock())

  # ---------------------------------------------------------------- stage 1
  def new_session(self, player_id, dataset=None, seed=None):
    """Starts a session on a dataset drawn from the pool (or the given dataset seed)."""
    s = self.settings
    if dataset is None:
      dataset = s.dataset_seed_base + random.randrange(s.num_datasets)
    state = {"hp": None, "top": 0, "line": [], "actions": 0, "epochs": 0, "consec_reverts": 0,
             "pending": None, "best_train": None, "best_val": None, "end_reason": None,
             "seed": random.randrange(2**31) if seed is None else seed}
    now = time.time()
    return self.store.execute(
      "INSERT INTO sessions (player_id, dataset, status, state, created, updated) "
      "VALUES (?, ?, 'stage1', ?, ?, ?)", (player_id, dataset, json.dumps(state), now, now))

  def configure(self, sid, width, lr, depth, dropout):
    """Stage 1: fixes the initial configuration and queues the first epoch (the network itself
    is initialised by the worker, see run_pending)."""
    given = {"width": width, "lr": lr, "depth": depth, "dropout": dropout}
    hp = {k: _stage1_choice(k, v) for k, v in given.items()}
    hp["wd"] = 0.0
    with self.store.transaction() as db:
      sess = _load(db, sid)
      if sess["status"] != "stage1":
        raise RuleError("this session is already configured")
      st = sess["state"]
      aid = _add_action(db, sid, 0, "configure", None, hp)
      st.update(hp=hp, pending={"hp": hp, "action": aid})
      _save(db, sid, "queued", st)
    return 0

  # ---------------------------------------------------------------- stage 2
  def act(self, sid, action, moves=None):
    """Records one stage-2 action. Continue queues an epoch; Revert and Done act at once.

    Returns the action's number (1-based, counted toward max_actions).
    """
    s = self.settings
    if action not in rules.ACTIONS:
      raise RuleError(f"unknown action {action!r}; expected one of {list(rules.ACTIONS)}")
    moves = {k: (moves or {}).get(k, "same") for k in HP_ORDER}
    with self.store.transaction() as db:
      sess = _load(db, sid)
      st = sess["state"]
      if sess["status"] == "queued":
        raise RuleError("an epoch is still training; wait for it to finish")
      if sess["status"] != "ready":
        raise RuleError(f"this session is {sess['status']}, not waiting for an action")
      number = st["actions"] + 1
      if action == "continue":
        try:
          new_hp = {k: rules.next_value(k, st["hp"][k], moves[k]) for k in HP_ORDER}
        except ValueError as e:
          raise RuleError(str(e)) from None
        aid = _add_action(db, sid, number, action, moves, new_hp)
        st.update(actions=number, pending={"hp": new_hp, "action": aid})
        _save(db, sid, "queued", st)
        return number
      if action == "revert":
        if st["top"] == 0:
          raise RuleError("nothing to revert: no epoch has been trained on this line")
        if st["consec_reverts"] >= s.max_consecutive_reverts:
          raise RuleError(f"at most {s.max_consecutive_reverts} consecutive reverts")
        db.execute("DELETE FROM checkpoints WHERE session_id = ? AND pos = ?", (sid, st["top"]))
        db.execute("UPDATE epochs SET reverted = 1 WHERE id = ?", (st["line"].pop(),))
        st["top"] -= 1
        row = db.execute("SELECT hparams FROM checkpoints WHERE session_id = ? AND pos = ?",
                         (sid, st["top"])).fetchone()
        st["hp"] = json.loads(row["hparams"])
        st["consec_reverts"] += 1
        _add_action(db, sid, number, action, None, st["hp"])
        st["actions"] = number
        done = number >= s.max_actions
        if done:
          st["end_reason"] = "out of actions"
        _save(db, sid, "done" if done else "ready", st)
        return number
      _add_action(db, sid, number, "done", None, st["hp"])
      st.update(actions=number, end_reason="done")
      _save(db, sid, "done", st)
      return number

  def exploit(self, sid, src_sid):
    """Agent-only (population-based training): copy src's live network, optimizer and
    hyperparameters into sid. Counts as one action; trains nothing. Not offered to players."""
    with self.store.transaction() as db:
      sess, src = _load(db, sid), _load(db, src_sid)
      if sess["status"] != "ready" or src["status"] not in ("ready", "done"):
        raise RuleError("exploit needs both sessions idle")
      if sess["dataset"] != src["dataset"]:
        raise RuleError("exploit only between sessions on the same dataset")
      st, sst = sess["state"], src["state"]
      row = db.execute("SELECT * FROM checkpoints WHERE session_id = ? AND pos = ?",
                       (src_sid, sst["top"])).fetchone()
      db.execute("UPDATE checkpoints SET hparams = ?, blob = ? WHERE session_id = ? AND pos = ?",
                 (row["hparams"], row["blob"], sid, st["top"]))
      number = st["actions"] + 1
      st.update(hp=json.loads(row["hparams"]), actions=number, consec_reverts=0)
      _add_action(db, sid, number, "exploit", {"from": src_sid}, st["hp"])
      done = number >= self.settings.max_actions
      if done:
        st["end_reason"] = "out of actions"
      _save(db, sid, "done" if done else "ready", st)

  # ---------------------------------------------------------------- training
  def run_pending(self, sid):
    """Trains the session's queued epoch, if any (idempotent; safe to call after a crash)."""
    with self._lock(("session", sid)):
      sess = self.store.session(sid)
      if sess is None or sess["status"] != "queued":
        return None
      st = sess["state"]
      pend = st["pending"]
      row = self.store.checkpoint(sid, st["top"])
      initial = None
      if row is None:  # first epoch: the untrained network is built here, not in the request
        old_hp = pend["hp"]
        state = trainer.fresh_state(old_hp, seed=st["seed"])
        initial = trainer.to_blob(state)
      else:
        old_hp = json.loads(row["hparams"])
        state = trainer.from_blob(row["blob"], old_hp)
      data = trainer.dataset(self.settings, sess["dataset"])
      t0 = time.time()
      seed = (st["seed"] * 1009 + st["epochs"]) % (2**31)
      state, metrics = trainer.train_one_epoch(self.settings, state, old_hp, pend["hp"], data,
                                               seed)
      metrics["seconds"] = round(time.time() - t0, 3)
      blob = trainer.to_blob(state)
      with self.store.transaction() as db:
        st = _load(db, sid)["state"]  # re-read: nothing else may change a queued session
        if initial is not None:
          db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, 0, ?, ?)",
                     (sid, json.dumps(old_hp), initial))
        number = st["epochs"] + 1
        eid = db.execute(
          "INSERT INTO epochs (session_id, number, hparams, metrics, created) "
          "VALUES (?, ?, ?, ?, ?)",
          (sid, number, json.dumps(pend["hp"]), json.dumps(metrics), time.time())).lastrowid
        st["top"] += 1
        db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                   (sid, st["top"], json.dumps(pend["hp"]), blob))
        db.execute("UPDATE actions SET metrics = ? WHERE id = ?",
                   (json.dumps(metrics), pend["action"]))
        st["line"].append(eid)
        st.update(hp=pend["hp"], pending=None, epochs=number, consec_reverts=0)
        for key, mkey in (("best_train", "train_acc"), ("best_val", "val_acc")):
          if metrics[mkey] is not None:
            st[key] = max(st[key] or 0.0, metrics[mkey])
        s = self.settings
        reason = ("out of epochs" if number >= s.max_epochs else
                  "out of actions" if st["actions"] >= s.max_actions else None)
        st["end_reason"] = reason
        _save(db, sid, "done" if reason else "ready", st)
      return metrics

  def baseline(self, dataset):
    return self.store.baseline(dataset)

  def ensure_baseline(self, dataset):
    """Computes and caches the dataset's baseline once (mean best val acc over 3 seeds)."""
    with self._lock(("baseline", dataset)):
      value = self.store.baseline(dataset)
      if value is None:
        runs = trainer.baseline_runs(self.settings, dataset)
        value = float(np.mean(runs))
        self.store.execute("INSERT OR REPLACE INTO baselines VALUES (?, ?, ?, ?)",
                           (dataset, value, json.dumps(runs), time.time()))
      return value

  def pending_work(self):
    """Sessions with a queued epoch and datasets lacking a baseline (used to resume)."""
    sids = self.store.sessions_with_status("queued")
    missing = [r["dataset"] for r in self.store.query(
      "SELECT DISTINCT dataset FROM sessions WHERE dataset NOT IN (SELECT dataset FROM baselines)")]
    return sids, missing

  # ---------------------------------------------------------------- views
  def view(self, sid):
    """Everything a page or an agent needs to see about a session."""
    s = self.settings
    sess = self.store.session(sid)
    if sess is None:
      raise KeyError(sid)
    st = sess["state"]
    hp = st["hp"]
    moves = {}
    if hp is not None:
      for k in HP_ORDER:
        moves[k] = {m: (rules.next_value(k, hp[k], m) if rules.can_move(k, hp[k], m) else None)
                    for m in rules.MOVES}
    epochs = self.store.epochs(sid)
    baseline = self.store.baseline(sess["dataset"])
    return {
      "id": sid, "player_id": sess["player_id"], "status": sess["status"],
      "dataset": sess["dataset"], "hp": hp, "moves": moves, "pending": st["pending"],
      "action_number": st["actions"] + 1, "actions": st["actions"], "epochs": st["epochs"],
      "max_actions": s.max_actions, "max_epochs": s.max_epochs,
      "consec_reverts": st["consec_reverts"], "max_reverts": s.max_consecutive_reverts,
      "can_revert": st["top"] > 0 and st["consec_reverts"] < s.max_consecutive_reverts,
      "history": epochs, "best_train": st["best_train"], "best_val": st["best_val"],
      "baseline": baseline, "end_reason": st["end_reason"],
      "score": (None if baseline is None or st["best_val"] is None
                else st["best_val"] - baseline),
    }

  def networks_trained(self, player_id):
    return self.store.one("SELECT COUNT(*) AS n FROM sessions WHERE player_id = ? AND "
                          "status = 'done'", (player_id,))["n"]

  def leaderboard(self):
    """Finished sessions' best val acc minus baseline: best per player and per dataset."""
    rows = self.store.query(
      "SELECT s.id, s.dataset, s.state, p.student_id, b.value AS baseline FROM sessions s "
      "JOIN players p ON p.id = s.player_id LEFT JOIN baselines b ON b.dataset = s.dataset "
      "WHERE s.status = 'done'")
    entries = []
    for r in rows:
      best = json.loads(r["state"])["best_val"]
      if best is None or r["baseline"] is None:
        continue
      entries.append({"session": r["id"], "dataset": r["dataset"], "player": r["student_id"],
                      "best_val": best, "baseline": r["baseline"], "score": best - r["baseline"]})
    per_player, per_dataset = {}, {}
    for e in entries:
      for table, key in ((per_player, e["player"]), (per_dataset, (e["dataset"], e["player"]))):
        if key not in table or e["score"] > table[key]["score"]:
          table[key] = e
    by_score = lambda t: sorted(t.values(), key=lambda e: -e["score"])
    return {"players": by_score(per_player),
            "datasets": sorted(per_dataset.values(), key=lambda e: (e["dataset"], -e["score"]))}


def _stage1_choice(key, value):
  """The stage-1 choice that `value` (a number or a form's text) names; anything else, text that
  is not a number included, is a RuleError listing the choices."""
  choices = STAGE1_CHOICES[key]
  try:
    number = float(value)
  except (TypeError, ValueError, OverflowError):
    number = None
  for c in choices:
    if number is not None and abs(number - c) < 1e-12:
      return c
  raise RuleError(f"{rules.HP_LABELS[key]} must be one of {list(choices)}")


def _load(db, sid):
  row = db.execute("SELECT * FROM sessions WHERE id = ?", (sid,)).fetchone()
  if row is None:
    raise KeyError(sid)
  out = dict(row)
  out["state"] = json.loads(out["state"])
  return out


def _save(db, sid, status, state):
  db.execute("UPDATE sessions SET status = ?, state = ?, updated = ? WHERE id = ?",
             (status, json.dumps(state), time.time(), sid))


def _add_action(db, sid, number, kind, moves, hp):
  return db.execute(
    "INSERT INTO actions (session_id, number, kind, moves, hparams, created) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    (sid, number, kind, None if moves is None else json.dumps(moves), json.dumps(hp),
     time.time())).lastrowid


__all__ = ["Engine", "RuleError", "LADDERS"]
