"""HyperQuest engine rules: ladders, budgets, reverts, Done, persistence, no recompiles."""
import pytest

from hyperquest import Engine, RuleError, Settings, Store, model, rules

TINY = Settings(train_size=64, val_size=32, batch_size=32, eval_batch_size=32, baseline_epochs=1,
                baseline_seeds=3, num_datasets=2)


def make(tmp_path, **kw):
  engine = Engine(Store(str(tmp_path / "hq.sqlite")), Settings(**{**TINY.__dict__, **kw}))
  pid = engine.store.add_player("p1", "h", "s")
  sid = engine.new_session(pid, seed=0)
  engine.configure(sid, 32, 0.01, 2, 0.0)
  engine.run_pending(sid)
  return engine, sid


def step(engine, sid, action, moves=None):
  n = engine.act(sid, action, moves)
  engine.run_pending(sid)
  return n


def test_ladders_and_disabled_ends():
  assert rules.LADDERS["lr"] == (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)
  assert rules.LADDERS["width"] == (16, 32, 64, 128, 256)
  assert rules.LADDERS["depth"] == (1, 2, 4, 8, 16)
  assert rules.LADDERS["dropout"] == (0.0, 0.1, 0.2, 0.3, 0.5, 0.7)
  assert rules.LADDERS["wd"] == (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
  for name, ladder in rules.LADDERS.items():
    for i, v in enumerate(ladder):
      assert rules.next_value(name, v, "same") == v
      assert rules.can_move(name, v, "up") == (i < len(ladder) - 1)
      assert rules.can_move(name, v, "down") == (i > 0)
      if i + 1 < len(ladder):
        assert rules.next_value(name, v, "up") == ladder[i + 1]
    with pytest.raises(ValueError, match="top"):
      rules.next_value(name, ladder[-1], "up")
    with pytest.raises(ValueError, match="bottom"):
      rules.next_value(name, ladder[0], "down")


def test_stage1_choices_and_disabled_moves_in_engine(tmp_path):
  engine, sid = make(tmp_path)
  other = engine.new_session(engine.view(sid)["player_id"])
  with pytest.raises(RuleError, match="Learning rate"):
    engine.configure(other, 32, 0.3, 2, 0.0)  # 0.3 is on the ladder but not a stage-1 choice
  v = engine.view(sid)
  assert v["hp"] == {"width": 32, "lr": 0.01, "depth": 2, "dropout": 0.0, "wd": 0.0}
  assert v["moves"]["wd"]["down"] is None and v["moves"]["dropout"]["down"] is None
  assert v["moves"]["lr"] == {"same": 0.01, "up": 0.03, "down": 3e-3}
  with pytest.raises(RuleError, match="bottom"):
    engine.act(sid, "continue", {"wd": "down"})
  assert engine.view(sid)["actions"] == 0  # a refused action costs nothing


def test_continue_moves_one_rung_and_revert_restores(tmp_path):
  engine, sid = make(tmp_path)
  assert step(engine, sid, "continue", {"lr": "up", "wd": "up", "dropout": "up"}) == 1
  v = engine.view(sid)
  assert v["hp"] == {"width": 32, "lr": 0.03, "depth": 2, "dropout": 0.1, "wd": 1e-5}
  assert (v["epochs"], v["action_number"]) == (2, 2)
  step(engine, sid, "revert")
  v = engine.view(sid)
  assert v["hp"]["lr"] == 0.01 and v["hp"]["wd"] == 0.0  # hyperparameters of epoch 1
  assert v["epochs"] == 2 and v["actions"] == 2  # the reverted epoch still counts
  assert [e["reverted"] for e in v["history"]] == [0, 1]
  assert engine.store.checkpoint(sid, 2) is None and engine.store.checkpoint(sid, 1) is not None


def test_five_consecutive_reverts_then_refused(tmp_path):
  engine, sid = make(tmp_path)
  for _ in range(6):
    step(engine, sid, "continue")
  for i in range(5):
    assert engine.view(sid)["can_revert"]
    step(engine, sid, "revert")
    assert engine.view(sid)["consec_reverts"] == i + 1
  assert not engine.view(sid)["can_revert"]
  with pytest.raises(RuleError, match="5 consecutive"):
    engine.act(sid, "revert")
  step(engine, sid, "continue")  # a Continue resets the streak
  assert engine.view(sid)["consec_reverts"] == 0 and engine.view(sid)["can_revert"]


def test_revert_needs_a_trained_epoch(tmp_path):
  engine, sid = make(tmp_path)
  step(engine, sid, "revert")  # back to the untrained stage-1 network
  with pytest.raises(RuleError, match="nothing to revert"):
    engine.act(sid, "revert")


def test_thirty_epochs_counting_reverted_ones(tmp_path):
  engine, sid = make(tmp_path)
  n = 0
  while engine.view(sid)["status"] != "done":
    step(engine, sid, "revert" if n % 3 == 2 else "continue")
    n += 1
  v = engine.view(sid)
  assert v["epochs"] == 30 and v["end_reason"] == "out of epochs"
  assert sum(e["reverted"] for e in v["history"]) > 0
  assert len(v["history"]) == 30
  with pytest.raises(RuleError):
    engine.act(sid, "continue")


def test_sixty_actions(tmp_path):
  engine, sid = make(tmp_path, max_epochs=100)  # with 30 epochs the epoch budget ends first
  for n in range(1, 61):
    assert engine.view(sid)["action_number"] == n
    step(engine, sid, "continue" if n % 2 else "revert")
  v = engine.view(sid)
  assert v["status"] == "done" and v["actions"] == 60 and v["end_reason"] == "out of actions"
  with pytest.raises(RuleError):
    engine.act(sid, "done")


def test_done_ends_and_scores(tmp_path):
  engine, sid = make(tmp_path)
  step(engine, sid, "continue")
  step(engine, sid, "done")
  v = engine.view(sid)
  assert v["status"] == "done" and v["end_reason"] == "done" and v["actions"] == 2
  assert v["best_val"] == max(e["metrics"]["val_acc"] for e in v["history"])
  base = engine.ensure_baseline(v["dataset"])
  assert engine.ensure_baseline(v["dataset"]) == base  # cached
  assert engine.store.one("SELECT COUNT(*) AS n FROM baselines")["n"] == 1
  board = engine.leaderboard()
  assert board["players"][0]["score"] == pytest.approx(v["best_val"] - base)
  kinds = [a["kind"] for a in engine.store.actions(sid)]
  assert kinds == ["configure", "continue", "done"]
  assert engine.store.actions(sid)[1]["metrics"]["val_acc"] is not None


def test_state_survives_a_new_engine(tmp_path):
  engine, sid = make(tmp_path)
  engine.act(sid, "continue", {"width": "up"})  # queued, not trained: the "crash" happens here
  engine.store.close()
  again = Engine(Store(str(tmp_path / "hq.sqlite")), engine.settings)
  sids, _ = again.pending_work()
  assert sids == [sid]
  again.run_pending(sid)
  v = again.view(sid)
  assert v["status"] == "ready" and v["epochs"] == 2 and v["hp"]["width"] == 64


def test_datasets_are_seeded_and_vary():
  from hyperquest.dataset import difficulty, make_dataset
  a = make_dataset(5, 50, 20)
  b = make_dataset.__wrapped__(5, 50, 20)
  assert (a["train"][0] == b["train"][0]).all() and a["train"][0].shape == (50, 32, 32, 3)
  assert len({round(difficulty(s)["noise"], 3) for s in range(10)}) == 10


def test_lr_wd_dropout_changes_do_not_recompile(tmp_path):
  engine, sid = make(tmp_path)
  train_step, _ = model.steps(32, 2)
  size = train_step._cache_size()
  assert size >= 1
  for moves in ({"lr": "up"}, {"wd": "up"}, {"dropout": "up"}, {"lr": "down", "dropout": "up"}):
    step(engine, sid, "continue", moves)
  assert train_step._cache_size() == size
  step(engine, sid, "continue", {"width": "up"})  # a new architecture gets its own step
  assert model.steps(64, 2)[0]._cache_size() == 1 and train_step._cache_size() == size
