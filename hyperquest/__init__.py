"""HyperQuest: a hyperparameter-tuning game on a small JAX CNN, with a web app and agents.

Headless use (what the web app and the agents both call):

  from hyperquest import Engine, Settings, Store
  engine = Engine(Store('runs/hq/hyperquest.sqlite'), Settings())
  sid = engine.new_session(player_id)
  engine.configure(sid, width=32, lr=0.01, depth=2, dropout=0.0)
  engine.run_pending(sid)                      # trains epoch 1
  engine.act(sid, 'continue', {'lr': 'down'})  # records action 1
  engine.run_pending(sid)                      # trains epoch 2
"""
from hyperquest.engine import Engine, RuleError
from hyperquest.rules import Settings
from hyperquest.store import Store

__all__ = ["Engine", "RuleError", "Settings", "Store"]
