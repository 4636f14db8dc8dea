r"""Take a trained encoder out: ONNX for any runtime, safetensors in torchvision's naming.

  python -m vidjax.export --workdir=runs/simsiam --output=runs/simsiam/exported
  python -m vidjax.export --workdir=runs/simsiam --checkpoint=runs/simsiam/checkpoints/400 --output=/tmp/enc

Writes OUTPUT/encoder.onnx, encoder.safetensors and export.json (what each holds: the
package docstring, vidjax/export/__init__.py). The folder is written beside OUTPUT and
swapped in when complete; an existing OUTPUT is replaced only with --overwrite.
"""
import sys

from absl import flags

from vidjax import cli, export
from vidjax.errors import ConfigError

flags.DEFINE_string('workdir', None, 'The training run whose encoder to export.')
flags.DEFINE_string('checkpoint', '', 'A WORKDIR/checkpoints/<step> folder (default: latest).')
flags.DEFINE_string('output', None, 'The folder to write.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --output.')


def main(argv):
  f = cli.command_flags(argv)
  for name in ('workdir', 'output'):
    if not getattr(f, name):
      sys.exit(f'error: --{name} is required (see --help)')
  try:
    summary = export.from_workdir(f.workdir, f.output, f.checkpoint, f.overwrite)
  except ConfigError as e:
    sys.exit(f'error: {e}')
  check = summary['onnx']['check']
  checked = (f'onnxruntime\'s output within {check["max_abs_difference"]:.1e} of JAX\'s on '
             f'{check["images"]} images (embedding values up to {check["max_abs_embedding"]:.2g})'
             if check else 'not checked: onnxruntime is not installed')
  print(f'{f.output}/{export.ONNX}: {summary["input"]["dtype"]} {summary["input"]["shape"]} '
        f'NHWC -> float32 {summary["output"]["shape"]}; {checked}')
  print(f'{f.output}/{export.SAFETENSORS}: {summary["safetensors"]["tensors"]} tensors in '
        'torchvision naming' + ('; loads into torchvision\'s '
                                f'{summary["model"]["name"]} (fc = Identity)'
                                if summary['safetensors']['loads_in_torchvision'] else
                                f'; a {summary["model"]["name"]} of width '
                                f'{summary["model"]["width"]} with this run\'s stem, not '
                                'torchvision\'s own (export.json)'))


def run():
  cli.run(main)


if __name__ == '__main__':
  run()
