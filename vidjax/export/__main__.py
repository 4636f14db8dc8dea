r"""Take a trained encoder out: ONNX for any runtime, safetensors in torchvision's naming.

  python -m vidjax.export --workdir=runs/simsiam --output=runs/simsiam/exported
  python -m vidjax.export --workdir=runs/simsiam --checkpoint=runs/simsiam/checkpoints/400 --output=/tmp/enc

Writes OUTPUT/encoder.onnx, encoder.safetensors and export.json (what each holds: the
package docstring, vidjax/export/__init__.py). The folder is written beside OUTPUT and
swapped in when complete; an existing OUTPUT is replaced only with --overwrite.
"""
import os
import shutil
import sys

from absl import flags

from vidjax import atomic, cli, disk_space, parallel, workdir, writer_lock
from vidjax.errors import ConfigError
from vidjax.evaluate import embed, encoders
from vidjax import export

flags.DEFINE_string('workdir', None, 'The training run whose encoder to export.')
flags.DEFINE_string('checkpoint', '', 'A WORKDIR/checkpoints/<step> folder (default: latest).')
flags.DEFINE_string('output', None, 'The folder to write.')
flags.DEFINE_bool('overwrite', False, 'Replace an existing --output.')


def export_encoder(f) -> dict:
  output = os.path.abspath(os.path.expanduser(f.output))
  config = workdir.load_config(f.workdir)
  mesh = parallel.make_mesh()
  model, variables, description = encoders.trained_variables(config, f.workdir, f.checkpoint,
                                                             mesh)
  embed_fn = embed.make_embed_fn(model, mesh)
  with (writer_lock.hold(output, '--output', beside=True),
        disk_space.reporting(output, '--output', f'{output} is as it was before; free some '
                             'space and run the same command again')):
    atomic.recover_folder(output)
    if os.path.exists(output) and not f.overwrite:
      raise ConfigError(f'--output={output} exists; pass --overwrite to replace it (the new '
                        'files are written beside it and swapped in when complete)')
    partial = f'{output}.partial'
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    with atomic.removed_on_error(partial):
      summary = export.write(partial, config, variables,
                             lambda images: embed.embed_images(embed_fn, variables, images, mesh),
                             description)
    atomic.replace_folder(partial, output)
  return summary


def main(argv):
  f = cli.command_flags(argv)
  for name in ('workdir', 'output'):
    if not getattr(f, name):
      sys.exit(f'error: --{name} is required (see --help)')
  try:
    summary = export_encoder(f)
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
