"""Defaults shared by every experiment config, and big_vision-style `:arg` parsing.

Each experiment file's `get_config(arg)` starts from `base_config()` and overrides what it needs.
`arg` is a comma-separated list such as `runlocal` or `demo,upsample=nearest`.
"""
import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'runlocal,upsample=nearest' -> ConfigDict(runlocal=True, upsample='nearest', ...).

  Only names given in `defaults` are accepted, so a typo fails with the list of valid ones.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, _, value = item.partition('=')
    if key not in defaults:
      raise ValueError(f'unknown config argument {key!r}; valid: {", ".join(sorted(defaults))}')
    default = defaults[key]
    if not value:
      parsed[key] = True
    elif isinstance(default, bool):
      parsed[key] = value.lower() in ('1', 'true', 'yes')
    else:
      parsed[key] = type(default)(value)
  return parsed


def data_config() -> ml_collections.ConfigDict:
  """The `config.data` block with every field's default (read by data/pipeline.py).

  Optional fields are typed placeholders so that `--config.data.data_dir=...` can override them.
  """
  placeholder = ml_collections.config_dict.placeholder  # A new one per field: they are shared refs.
  return ml_collections.ConfigDict(dict(
      name='shapes',  # A key of data.DATASETS.
      variant='default',  # A builder config of that dataset (data.variants(name)).
      data_dir=placeholder(str),  # TFDS data dir; None = $TFDS_DATA_DIR or ~/tensorflow_datasets.
      manual_dir=placeholder(str),  # VOC archives; None = <data_dir>/downloads/manual.
      train_split='train',
      eval_split='validation',
      image_size=64,  # Eval images are fitted (downscale if larger, then pad) to this size.
      max_boxes=8,  # M: boxes/labels/instance masks are padded or truncated to this.
      # crop_size: train crop/pad size; None = image_size. crop_hw: an (h, w) train canvas
      # instead (e.g. (800, 1333), torchvision's landscape COCO batch).
      # Train-time resize: the detection recipe's shorter side `min_size` (longer side at most
      # `max_size`; None = no recipe resize) times a random jitter in [scale_min, scale_max].
      # recipe: None (the above) or 'ssd' (data/augment_ssd.py: SSD's distort, zoom-out, IoU
      # crop, flip, stretched to crop_size).
      augment=dict(flip=True, scale_min=1.0, scale_max=1.0, crop_size=placeholder(int),
                   crop_hw=placeholder(tuple), min_size=placeholder(int),
                   max_size=placeholder(int), recipe=placeholder(str)),
      # S: train batches carry each instance's mask as an S x S crop of its box
      # (`instance_crops`); Mask R-CNN samples its 28x28 targets from them (ops/masks.py).
      mask_crop_size=56,
      # External region proposals for R-CNN-style models (data/proposals.py), cached per split.
      # method: None (none; batches have no proposal keys), 'selective_search_fast' or
      # 'selective_search_quality'. max_proposals: P, R-CNN's ~2000 per image.
      proposals=dict(method=placeholder(str), max_proposals=2000),
      # Training: grain worker processes; 0 = in-process (threads); -1 = one per core from 4
      # cores up, in-process below (why: data.workers.MIN_CORES_FOR_WORKERS).
      worker_count=-1,
      read_threads=2,  # Threads that prepare batches (in each worker process, if any).
      # Batches read ahead (train and eval). Memory is bounded by about (read_threads +
      # prefetch_batches) batches, whatever the split's size (grain's default: 500).
      prefetch_batches=4,
      device_prefetch=2,  # Train batches put on the devices ahead of the step (training/loop.py).
      # name='coco_json' (data/coco_json.py): COCO-format files; the image folders default to
      # each JSON's own folder. keypoint_sigmas: OKS sigmas of its joints (default: COCO's).
      train_json=placeholder(str), train_images=placeholder(str),
      eval_json=placeholder(str), eval_images=placeholder(str), keypoint_sigmas=placeholder(tuple),
      # name='mask_folder' (data/mask_folder.py): folders with images/ + masks/ (or VOC's
      # Annotations/ + JPEGImages/); class names as a list or a file of one name a line.
      train_dir=placeholder(str), eval_dir=placeholder(str), class_names=placeholder(tuple),
      class_names_file=placeholder(str),
      # The reference's eval-time resize (data/eval_resize.py): shorter side to eval_min_size,
      # longer side at most eval_max_size, padded to a fixed canvas whose sides are multiples of
      # eval_size_divisor. None: fit into image_size x image_size (downscale only).
      # eval_fixed_size (h, w) instead: stretch every eval image to h x w (SSD300's 300 x 300).
      eval_min_size=placeholder(int), eval_max_size=1333, eval_size_divisor=32,
      eval_fixed_size=placeholder(tuple),
  ))


# XLA:CPU gives matmuls and reductions to YNNPACK but keeps convolutions on its own Eigen kernels
# (by default YNNPACK takes those with more than 16 channels). On this project's 2-core AVX2 box
# Eigen's were 1.1-3.5x faster (3x3, batch 16: 32 -> 64 at 32x32 3.7 vs 8.0 ms, 128 -> 128 at
# 16x16 6.9 vs 13.1 ms; 256 -> 256 at 200x200, batch 1, 299 vs 351 ms). Train steps, one run
# each: ResNet-18 (64 px, batch 32) 83 -> 109 img/s, FCN-8s (128 px, batch 16) 34 -> 39, Faster
# R-CNN R50-FPN (800x1344, batch 1) 8.95 -> 8.70 s (BENCHMARKS.md, thirteenth session, with the
# interleaved A/B). Without YNNPACK's reductions, XLA fused ResNet's stem-pool gradient into each
# of bn1's backward reductions (58-61 ms each).
CPU_XLA_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type':
                   'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.task = 'segmentation'  # Key of tasks.TASKS.
  c.seed = 0  # Parameter init, dropout and data order all derive from it.
  c.batch_size = 16  # Global batch size, split over all devices and hosts.
  # Sequential slices of each device's batch per step, gradients summed (training/step.py): the
  # activation memory of batch_size / (devices * microbatches) images, the same gradient.
  c.microbatches = 1
  c.total_steps = 1000
  c.parallel = 'jit'  # 'jit' (batch sharded over a device mesh) or 'pmap'.
  # XLA options for compiling the train step (jax.jit's compiler_options; under pmap
  # training/parallel.py:PmapWithOptions), e.g. the R50-FPN configs' memory-saving CPU scheduler.
  # A backend ignores the other backends' options.
  c.xla_options = ml_collections.ConfigDict(CPU_XLA_OPTIONS)
  # The same for the eval step (evaluation, tools/predict.py, tools/bench.py), in every mode.
  c.eval_xla_options = ml_collections.ConfigDict(CPU_XLA_OPTIONS)
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  c.max_checkpoints = 3  # Older checkpoints are deleted.
  c.eval_every_steps = 0  # 0: evaluate once, at the end of training.
  c.eval_batch_size = 32
  c.num_overlays = 8  # Overlay PNGs written by each evaluation.

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'adamw'  # 'adamw' or 'sgd'.
  c.optimizer.learning_rate = 1e-3  # Peak learning rate.
  c.optimizer.schedule = 'cosine'  # 'constant', 'cosine' or 'step'.
  c.optimizer.warmup_steps = 0
  c.optimizer.step_boundaries = (0.66, 0.9)  # 'step': fractions of the decay steps.
  c.optimizer.step_factor = 0.1  # 'step': multiplier at each boundary.
  c.optimizer.weight_decay = 1e-4  # Decoupled for adamw, L2 for sgd; kernels only.
  c.optimizer.momentum = 0.9  # sgd only.
  c.optimizer.nesterov = False  # sgd only.
  c.optimizer.b1 = 0.9  # adamw only.
  c.optimizer.b2 = 0.999  # adamw only.
  c.optimizer.grad_clip_norm = 0.0  # 0: no clipping.

  c.data = data_config()

  c.model = ml_collections.ConfigDict()
  c.model.name = 'fcn8s'  # Key of models.MODELS; the other fields are its keyword arguments.
  # Compute dtype (parameters stay float32). 'bfloat16' is for accelerators: on the 2-core CPU
  # box it trains slower (BENCHMARKS.md: FCN-8s 78.5 -> 57.4 img/s, ResNet-18 188.8 -> 145.4).
  c.model.dtype = 'float32'

  c.loss = ml_collections.ConfigDict()
  c.loss.class_weights = ()  # Empty: unweighted. Else one weight per class.

  c.init = ml_collections.ConfigDict()  # Transfer learning (training/pretrained.py).
  c.init.checkpoint = ''  # '' (random init), a workdir of ours, or a torchvision .safetensors.
  c.init.freeze_backbone = False  # Keep the loaded backbone fixed (else fine-tune it).
  return c


def runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config to seconds on a laptop CPU: tiny data, batch and step counts."""
  c.data.variant = 'small'
  c.data.image_size = 64  # The small variants are 64x64.
  c.data.worker_count = 0  # Starting worker processes takes longer than such a run.
  c.batch_size = 8
  c.eval_batch_size = 16
  c.total_steps = 2
  c.log_every_steps = 1
  c.checkpoint_every_steps = 2
  c.num_overlays = 2
  return c
