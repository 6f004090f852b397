r"""torchvision ResNet weights <-> our flax ResNet variables, through safetensors (no torch needed).

Make the file once where torch is installed:

  python -c "import torchvision, safetensors.torch as st; st.save_file(
      torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict(), 'resnet18.safetensors')"

then check it against our model and use it as a backbone init (whole torchvision detectors:
`--arch fasterrcnn_resnet50_fpn|maskrcnn_resnet50_fpn|keypointrcnn_resnet50_fpn --out DIR` writes
our checkpoint, see models/torchvision_detection.py and the README's "Reproduce torchvision's COCO
numbers"; `--arch fcn_resnet50|fcn_resnet101|ssd300_vgg16 --out DIR` likewise, see
models/torchvision_fcn_ssd.py):

  python -m tools.import_weights resnet18.safetensors --arch resnet18
  python train.py --config configs/loc/localizer_shapes.py:backbone=resnet18 --workdir runs/x \
      --config.init.checkpoint=resnet18.safetensors [--config.init.freeze_backbone]

The conversion itself (and its key mapping) is the library's: models/torchvision_weights.py.
"""
import argparse
import os
import sys

from safetensors.numpy import load_file

from models import torchvision_detection, torchvision_fcn_ssd
from models.torchvision_weights import check_against_model, load_safetensors
from training import model_init


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('path', help='torchvision state dict as .safetensors')
  parser.add_argument('--arch', default='resnet18',
                      choices=('resnet18', 'resnet50', 'resnet101', *torchvision_detection.MODELS,
                               *torchvision_fcn_ssd.MODELS))
  parser.add_argument('--out', help='write our checkpoint here (a directory, see '
                      'training/model_init.py); without it, only check the file')
  args = parser.parse_args()
  if not os.path.exists(args.path):
    sys.exit(f'{args.path} not found; see `python -m tools.import_weights --help` and the README '
             '("Reproduce torchvision\'s COCO numbers") for how to make it')
  if args.arch in torchvision_detection.MODELS:
    variables = torchvision_detection.convert(load_file(args.path))
    count = torchvision_detection.check(variables, args.arch)
  elif args.arch in torchvision_fcn_ssd.MODELS:
    state_dict = load_file(args.path)
    classes = torchvision_fcn_ssd.num_classes_of(state_dict, args.arch)
    variables = torchvision_fcn_ssd.convert(state_dict, args.arch)
    count = torchvision_fcn_ssd.check(variables, args.arch, classes)
  else:
    variables = load_safetensors(args.path)
    fc = variables['params'].get('fc', {}).get('kernel')
    count = check_against_model(variables, args.arch, None if fc is None else fc.shape[1])
    variables['params'].pop('fc', None)  # ImageNet's classifier; our models have their heads.
    variables = {c: {'backbone': v} for c, v in variables.items()}
  print(f'{args.path}: all {count} arrays map onto our {args.arch}.')
  if args.out:
    print(f'wrote {model_init.write_checkpoint(variables, args.out)}')


if __name__ == '__main__':
  main()
