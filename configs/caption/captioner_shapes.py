r"""Image captioning (CNN encoder + LSTM decoder, Show and Tell) on Shapes `captions` (64x64).

  python train.py --config configs/caption/captioner_shapes.py --workdir runs/captioner_shapes
  python train.py --config configs/caption/captioner_shapes.py:runlocal --workdir /tmp/captioner

Arguments after ':' (comma-separated): `runlocal` (seconds, for tests), `demo` (a few minutes),
`backbone=NAME` (vgg_small, resnet18, ...), `cell=lstm|rnn`, `beam=K` (beam width of the
evaluation captions; 1 = greedy). The caption lists the scene's objects, largest first ("a large
blue square and a small red circle"). Metrics: BLEU-4, METEOR (nltk, no WordNet synonyms) and
exact match of the decoded captions; numbers in BENCHMARKS.md.
"""
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, runlocal=False, demo=False, backbone='vgg_small', cell='lstm',
                         beam=1)
  c = common.base_config()
  c.task = 'captioning'
  c.model.name = 'image_captioner'
  c.model.backbone = arg.backbone
  c.model.cell = arg.cell
  c.model.embed_dim = 64
  c.model.hidden = 256
  c.model.dropout_rate = 0.0
  c.model.beam_size = arg.beam

  c.data.variant = 'captions'
  c.data.max_boxes = 4  # Scenes have at most 3 objects.
  c.data.augment.flip = True  # The image caption does not mention left and right.

  c.batch_size = 32
  c.total_steps = 3000
  c.optimizer.name = 'adamw'
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 5.0  # Recurrent nets: the occasional exploding gradient.
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000

  if arg.demo:
    c.total_steps = 800
  if arg.runlocal:
    common.runlocal(c)
    c.data.variant = 'captions_small'
    c.model.embed_dim = 8
    c.model.hidden = 16
  return c
