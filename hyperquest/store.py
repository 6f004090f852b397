"""SQLite persistence: players, survey, sessions, actions, epochs, checkpoints, baselines and
the nonces of submitted forms.

One database file; every write that changes a session happens in one transaction, so a killed
server restarts from a consistent state (a queued epoch is simply trained again).
"""
import json
import os
import sqlite3
import threading
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS players (
  id INTEGER PRIMARY KEY, student_id TEXT UNIQUE NOT NULL, secret_hash TEXT NOT NULL,
  salt TEXT NOT NULL, survey TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  id INTEGER PRIMARY KEY, player_id INTEGER NOT NULL REFERENCES players(id),
  dataset INTEGER NOT NULL, status TEXT NOT NULL, state TEXT NOT NULL,
  created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS actions (
  id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id),
  number INTEGER NOT NULL, kind TEXT NOT NULL, moves TEXT, hparams TEXT NOT NULL,
  metrics TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS epochs (
  id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id),
  number INTEGER NOT NULL, hparams TEXT NOT NULL, metrics TEXT NOT NULL,
  reverted INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
  session_id INTEGER NOT NULL, pos INTEGER NOT NULL, hparams TEXT NOT NULL, blob BLOB NOT NULL,
  PRIMARY KEY (session_id, pos));
CREATE TABLE IF NOT EXISTS baselines (
  dataset INTEGER PRIMARY KEY, value REAL NOT NULL, runs TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS used_nonces (nonce TEXT PRIMARY KEY, issued REAL NOT NULL);
CREATE INDEX IF NOT EXISTS used_nonces_by_issued ON used_nonces(issued);
DROP TABLE IF EXISTS nonces;  -- the old table stored every form ever shown
CREATE INDEX IF NOT EXISTS actions_by_session ON actions(session_id);
CREATE INDEX IF NOT EXISTS epochs_by_session ON epochs(session_id);
CREATE INDEX IF NOT EXISTS sessions_by_player ON sessions(player_id);
"""


class Store:
  """A thread-safe wrapper over one sqlite3 connection (WAL mode, one lock)."""

  def __init__(self, path):
    self.path = path
    if path != ":memory:":
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    self._db.row_factory = sqlite3.Row
    self._lock = threading.RLock()
    self._db.execute("PRAGMA journal_mode=WAL")
    self._db.execute("PRAGMA synchronous=NORMAL")
    self._db.executescript(SCHEMA)

  def close(self):
    with self._lock:
      self._db.close()

  def transaction(self):
    return _Tx(self)

  def query(self, sql, args=()):
    with self._lock:
      return self._db.execute(sql, args).fetchall()

  def one(self, sql, args=()):
    rows = self.query(sql, args)
    return rows[0] if rows else None

  def execute(self, sql, args=()):
    with self._lock:
      return self._db.execute(sql, args).lastrowid

  # ---- players
  def add_player(self, student_id, secret_hash, salt):
    return self.execute(
      "INSERT INTO players (student_id, secret_hash, salt, created) VALUES (?, ?, ?, ?)",
      (student_id, secret_hash, salt, time.time()))

  def player_by_student(self, student_id):
    return self.one("SELECT * FROM players WHERE student_id = ?", (student_id,))

  def player(self, player_id):
    return self.one("SELECT * FROM players WHERE id = ?", (player_id,))

  def set_survey(self, player_id, answers):
    self.execute("UPDATE players SET survey = ? WHERE id = ?", (json.dumps(answers), player_id))

  # ---- sessions
  def session(self, sid):
    row = self.one("SELECT * FROM sessions WHERE id = ?", (sid,))
    if row is None:
      return None
    out = dict(row)
    out["state"] = json.loads(out["state"])
    return out

  def sessions_of(self, player_id):
    return [self.session(r["id"]) for r in
            self.query("SELECT id FROM sessions WHERE player_id = ? ORDER BY id", (player_id,))]

  def sessions_with_status(self, *statuses):
    marks = ",".join("?" * len(statuses))
    return [r["id"] for r in self.query(
      f"SELECT id FROM sessions WHERE status IN ({marks}) ORDER BY updated", statuses)]

  def actions(self, sid):
    return [_decode(r, "moves", "hparams", "metrics") for r in self.query(
      "SELECT * FROM actions WHERE session_id = ? ORDER BY number", (sid,))]

  def epochs(self, sid):
    return [_decode(r, "hparams", "metrics") for r in self.query(
      "SELECT * FROM epochs WHERE session_id = ? ORDER BY number", (sid,))]

  def checkpoint(self, sid, pos):
    return self.one("SELECT * FROM checkpoints WHERE session_id = ? AND pos = ?", (sid, pos))

  def baseline(self, dataset):
    row = self.one("SELECT value FROM baselines WHERE dataset = ?", (dataset,))
    return None if row is None else row["value"]

  # ---- nonces of submitted forms (form tokens themselves are signed, not stored)
  def use_nonce(self, nonce, issued, forget_before):
    """Records a form's nonce as used: False if it already was. Forgets the nonces issued before
    `forget_before`: their forms have expired and are refused before this table is asked, so it
    holds only the forms submitted within one expiry period."""
    with self._lock:
      self._db.execute("DELETE FROM used_nonces WHERE issued < ?", (forget_before,))
      return self._db.execute("INSERT OR IGNORE INTO used_nonces VALUES (?, ?)",
                              (nonce, issued)).rowcount == 1

  def release_nonce(self, nonce):
    """Makes a used nonce usable again (its form was refused by the rules, not applied)."""
    self.execute("DELETE FROM used_nonces WHERE nonce = ?", (nonce,))


class _Tx:
  """`with store.transaction() as db:` runs its statements atomically (BEGIN IMMEDIATE)."""

  def __init__(self, store):
    self.store = store

  def __enter__(self):
    self.store._lock.acquire()
    self.store._db.execute("BEGIN IMMEDIATE")
    return self.store._db

  def __exit__(self, exc_type, exc, tb):
    try:
      self.store._db.execute("ROLLBACK" if exc_type else "COMMIT")
    finally:
      self.store._lock.release()
    return False


def _decode(row, *fields):
  out = dict(row)
  for f in fields:
    out[f] = None if out[f] is None else json.loads(out[f])
  return out
