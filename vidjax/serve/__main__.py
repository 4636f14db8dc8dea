r"""Serve a corpus index: search it and label what it finds, from a web page or a JSON API.

  python -m vidjax.serve --index=/data/drives_index                  # http://127.0.0.1:8000
  python -m vidjax.serve --index=/data/drives_index --host=0.0.0.0 --port=8080

The index is loaded once and kept in memory (its faiss index memory-mapped); queries are
embedded by the encoder the index was built with. The page is at /, the API under /api
(OpenAPI page: /docs). It binds 127.0.0.1 unless --host says otherwise: anyone who can
reach the port can read the corpus's frames and write labels.
"""
import os
import sys

from absl import flags

from vidjax import cli
from vidjax.errors import ConfigError

flags.DEFINE_string('index', None, 'An index folder (python -m vidjax.index).')
flags.DEFINE_string('host', '127.0.0.1', 'Address to bind (0.0.0.0: every interface).')
flags.DEFINE_integer('port', 8000, 'Port to listen on.')
flags.DEFINE_float('max_upload_mb', 20.0, 'Largest request body accepted (413 above).')
flags.DEFINE_integer('max_image_pixels', 50_000_000, 'Largest uploaded image, in pixels '
                     '(413 above, checked before decoding).')
flags.DEFINE_string('export_dir', '', 'Where the page\'s Export button writes (default '
                    'INDEX/exports/labelled).')


def main(argv):
  f = cli.command_flags(argv)
  if not f.index:
    sys.exit('error: --index is required (a folder written by python -m vidjax.index)')
  if not 0 < f.port < 65536 or f.max_upload_mb <= 0 or f.max_image_pixels <= 0:
    sys.exit('error: --port must be in 1-65535, --max_upload_mb and --max_image_pixels > 0')
  import uvicorn
  from vidjax.serve.app import create_app
  try:
    server_app = create_app(os.path.expanduser(f.index), int(f.max_upload_mb * 2**20),
                            f.max_image_pixels, f.export_dir)
  except (ConfigError, ValueError) as e:
    sys.exit(f'error: {e}')
  index = server_app.state.index
  print(f'serving {index.folder} ({len(index)} vectors, {index.summary["encoder"]}) at '
        f'http://{f.host}:{f.port}  (API docs: /docs)', flush=True)
  uvicorn.run(server_app, host=f.host, port=f.port, log_level='warning')


def run():
  cli.run(main)


if __name__ == '__main__':
  run()
