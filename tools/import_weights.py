r"""torchvision ResNet weights <-> our flax ResNet variables, through safetensors (no torch needed).

Make the file once where torch is installed:

  python -c "import torchvision, safetensors.torch as st; st.save_file(
      torchvision.models.resnet18(weights='IMAGENET1K_V1').state_dict(), 'resnet18.safetensors')"

then check it against our model and use it as a backbone init:

  python -m tools.import_weights resnet18.safetensors --arch resnet18
  python train.py --config configs/loc/localizer_shapes.py:backbone=resnet18 --workdir runs/x \
      --config.init.checkpoint=resnet18.safetensors [--config.init.freeze_backbone]

The conversion itself (and its key mapping) is the library's: models/torchvision_weights.py.
"""
import argparse

from models.torchvision_weights import check_against_model, load_safetensors


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('path', help='torchvision ResNet state dict as .safetensors')
  parser.add_argument('--arch', default='resnet18', choices=('resnet18', 'resnet50', 'resnet101'))
  args = parser.parse_args()
  variables = load_safetensors(args.path)
  fc = variables['params'].get('fc', {}).get('kernel')
  count = check_against_model(variables, args.arch, None if fc is None else fc.shape[1])
  print(f'{args.path}: all {count} arrays map onto our {args.arch}.')


if __name__ == '__main__':
  main()
