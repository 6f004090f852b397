"""The game's rules as data: value ladders, budgets, stage-1 choices and engine settings."""
import dataclasses

# Up/Down move one rung along these ladders; at either end that button is disabled.
LADDERS = {
  "wd": (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3),
  "depth": (1, 2, 4, 8, 16),
  "dropout": (0.0, 0.1, 0.2, 0.3, 0.5, 0.7),
  "lr": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3),
  "width": (16, 32, 64, 128, 256),
}
# Column order of the stage-2 table (as in the original game) and the labels shown to players.
HP_ORDER = ("wd", "depth", "dropout", "lr", "width")
HP_LABELS = {
  "wd": "Weight decay", "depth": "CNN Network depth", "dropout": "Dropout",
  "lr": "Learning rate", "width": "CNN Network width",
}
HP_INFO = {
  "wd": "L2 penalty added to the loss: every step shrinks each weight by lr x wd x weight.",
  "depth": "Number of 3x3 conv layers after the stem (half at 16x16, half at 8x8 resolution).",
  "dropout": "Probability of zeroing each pooled feature during training (a regulariser).",
  "lr": "Step size of SGD with momentum 0.9.",
  "width": "Number of channels of every conv layer.",
}
# Stage 1 offers a subset of each ladder (the original game's choices).
STAGE1_CHOICES = {
  "width": (32, 64, 128), "lr": (0.1, 0.01, 0.001), "depth": (2, 4, 8), "dropout": (0.0, 0.5),
}
DEFAULT_HP = {"width": 32, "depth": 2, "lr": 0.01, "dropout": 0.0, "wd": 0.0}
MOVES = ("same", "up", "down")
ACTIONS = ("continue", "revert", "done")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Engine settings. The defaults are the real game; tests and short agent runs shrink them."""
  max_actions: int = 60
  max_epochs: int = 30
  max_consecutive_reverts: int = 5
  train_size: int = 8500
  val_size: int = 1500
  batch_size: int = 128
  eval_batch_size: int = 500
  num_classes: int = 10
  # Datasets are drawn from a finite pool so that players meet the same dataset and a
  # per-dataset leaderboard and a cached baseline make sense.
  num_datasets: int = 20
  dataset_seed_base: int = 1000
  baseline_seeds: int = 3
  # Epochs of the default configuration per baseline run (best val acc over these epochs).
  baseline_epochs: int = 10


def rung(name, value):
  """Index of `value` on the ladder of `name` (nearest rung, so 0.01 == 1e-2 exactly)."""
  ladder = LADDERS[name]
  return min(range(len(ladder)), key=lambda i: abs(ladder[i] - value))


def next_value(name, value, move):
  """The value after Same/Up/Down; raises ValueError on a disabled end of the ladder."""
  if move not in MOVES:
    raise ValueError(f"unknown move {move!r}; expected one of {MOVES}")
  ladder = LADDERS[name]
  i = rung(name, value) + {"same": 0, "up": 1, "down": -1}[move]
  if not 0 <= i < len(ladder):
    raise ValueError(f"{HP_LABELS[name]} is already at the {'top' if i > 0 else 'bottom'}")
  return ladder[i]


def can_move(name, value, move):
  try:
    next_value(name, value, move)
    return True
  except ValueError:
    return False


def fmt_value(name, value):
  """How the UI shows a value (learning rate and weight decay in scientific notation)."""
  if name in ("lr", "wd"):
    return "0" if value == 0 else f"{value:.2e}"
  if name == "dropout":
    return f"{value:.1f}"
  return str(int(value))


def describe(hp):
  return (f"Width = {hp['width']}, Depth = {hp['depth']}, Learning rate = {hp['lr']:g}, "
          f"Dropout = {hp['dropout']:g}, Weight decay = {hp['wd']:g}")
