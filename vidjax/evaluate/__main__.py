r"""Evaluate an encoder on labelled crops: kNN, few-shot, linear probe, retrieval, separation.

  python -m vidjax.evaluate --workdir=runs/simsiam
  python -m vidjax.evaluate --workdir=runs/drives --support=imagefolder:/data/crops/train --query=imagefolder:/data/crops/val
  python -m vidjax.evaluate --workdir=runs/drives --init=all    # trained vs random init, raw pixels, HOG

Loads WORKDIR/config.json and the latest checkpoint (or --checkpoint), embeds the support
(few-shot labelled) and query (validation) sets, and writes WORKDIR/eval/<init>/:
metrics.json, embeddings/ (support/query .npy + .jsonl, support.faiss), retrieval.png/.html,
similarity.png; WORKDIR/eval/training_curves.png; with --init=all, WORKDIR/eval/comparison.md.

Multi-host: the same command on every host with main.py's --coordinator_address,
--num_processes and --process_id (or --distributed); each process embeds its rows of every
batch, and process 0 computes the metrics on the gathered embeddings and writes everything.
"""
import sys

from absl import app, flags, logging

from vidjax import cli, multihost
from vidjax.evaluate import protocol

flags.DEFINE_string('workdir', None, 'The training run to evaluate (holds config.json).')
flags.DEFINE_string('checkpoint', '', 'A WORKDIR/checkpoints/<step> folder (default: latest).')
flags.DEFINE_string('support', 'synthetic', 'Labelled support set: synthetic, '
                    'imagefolder:DIR or tfds:NAME[:SPLIT].')
flags.DEFINE_string('query', 'synthetic', 'Labelled query set (same kinds as --support).')
flags.DEFINE_string('init', 'trained', 'Encoder: trained (the checkpoint), random (init), '
                    'pixels, hog (descriptors), all (those four), or weights:PATH (a '
                    'pretrained ResNet-18/34/50 as safetensors, torchvision or timm naming).')
flags.DEFINE_string('index', 'Flat', 'faiss index_factory string for the support index '
                    '(Flat = exact; e.g. IVF1024,PQ32 for large sets).')
flags.DEFINE_list('shots', ['1', '5', '10', '20'], 'Labelled items per class for few-shot NN.')
flags.DEFINE_integer('draws', 10, 'Random draws per few-shot n.')
flags.DEFINE_integer('linear_samples_per_class', 0, 'Linear probe on this many support items '
                     'per class (0 = all).')
flags.DEFINE_integer('linear_runs', 5, 'Repeated draws when --linear_samples_per_class > 0.')
flags.DEFINE_bool('finetune', False, 'Also fine-tune the whole encoder plus a linear head on '
                  '--finetune_samples_per_class labelled support crops per class '
                  '(evaluate/finetune.py), --finetune_runs times; not for pixels or hog.')
flags.DEFINE_integer('finetune_samples_per_class', 10, 'Labelled crops per class to fine-tune on.')
flags.DEFINE_integer('finetune_runs', 5, 'Fine-tuning runs, each on a fresh draw.')
flags.DEFINE_integer('finetune_steps', 200, 'Steps of each fine-tuning run.')
flags.DEFINE_integer('grid_queries', 10, 'Query rows in the retrieval grid.')
flags.DEFINE_integer('grid_neighbours', 8, 'Neighbours per row in the retrieval grid.')
flags.DEFINE_integer('batch_size', 256, 'Images per embedding batch.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  options = flags.FLAGS
  if not options['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO.
  if not options.workdir:
    sys.exit('error: --workdir is required (the workdir of a python main.py run)')
  try:
    multihost.initialize_from_flags()
  except multihost.FlagError as e:
    sys.exit(f'error: {e}')
  protocol.run(options)


def run():
  cli.run(main)


if __name__ == '__main__':
  run()
