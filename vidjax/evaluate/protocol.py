"""The evaluation protocol behind `python -m vidjax.evaluate` (see __main__.py): embed the
support and query sets with one encoder, then kNN, few-shot, linear probe, retrieval and
separation metrics, pictures, and the files of WORKDIR/eval/.
"""
import os
import sys

import jax
import numpy as np

from vidjax import atomic, disk_space, parallel, workdir as runs, writer_lock
from vidjax.errors import ConfigError
from vidjax.evaluate import (datasets, encoders, export, finetune, knn, linear, metrics,
                             pictures)

TABLE_COLUMNS = ('knn_top1', '5-shot', 'linear_top1', 'mAP', 'roc_auc')


def check_shared_classes(support_set, query_set, options):
  """A ConfigError unless some query category is also a support category (by name)."""
  if not datasets.align_query_labels(support_set, query_set)[1].any():
    names = lambda images: ', '.join(images.class_names[:5]) + (
        ', ...' if len(images.class_names) > 5 else '')
    raise ConfigError(f'--query={options.query}: none of its categories ({names(query_set)}) '
                      f'is a category of --support={options.support} ({names(support_set)}); '
                      'the two sets must share category (sub-folder) names')


def evaluate(init: str, config, workdir: str, support_set, query_set, mesh, options):
  """Runs the whole protocol for one encoder and writes WORKDIR/eval/<folder_name(init)>/;
  the metrics dict on process 0, None on the others (which only help embed)."""
  out = os.path.join(workdir, 'eval', encoders.folder_name(init))
  is_chief = jax.process_index() == 0
  if init in encoders.HANDMADE and not is_chief:
    return None  # Nothing to compute together.
  network = None
  if init in encoders.HANDMADE:
    encoder, description = encoders.load_encoder(config, workdir, init, mesh)
  else:
    network = encoders.network(config, workdir, init, mesh, options.checkpoint)
    encoder, description = encoders.embedder(*network[:2], mesh), network[2]
  embedded = os.path.join(out, 'embeddings')
  support = export.export_embeddings(support_set, encoder, config.image_size, embedded,
                                     'support', options.batch_size, write=is_chief)
  query = export.export_embeddings(query_set, encoder, config.image_size, embedded, 'query',
                                   options.batch_size, write=is_chief)
  if not is_chief:
    return None
  support, query = np.asarray(support), np.asarray(query)
  index = knn.build_index(support, options.index, os.path.join(embedded, 'support.faiss'))
  aligned_labels, known = datasets.align_query_labels(support_set, query_set)
  query, query_labels = query[known], aligned_labels[known]
  support_labels, num_classes = support_set.labels, len(support_set.class_names)
  notes = [f'{np.sum(~known)} query items of classes the support lacks left out'] if (
      ~known).any() else []
  result = {'init': init, 'encoder': description, 'support': options.support,
            'query': options.query, 'num_support': len(support), 'num_query': len(query),
            'unreadable_skipped': len(support_set.skipped) + len(query_set.skipped)}
  result.update(metrics.knn_metrics(support, support_labels, query, query_labels, num_classes,
                                    temperature=config.monitor.temperature, index=index))
  result['fewshot'], fewshot_notes = metrics.fewshot_metrics(
      support, support_labels, query, query_labels, [int(n) for n in options.shots],
      options.draws, config.seed)
  result.update(linear.linear_probe(support, support_labels, query, query_labels, num_classes,
                                    options.linear_samples_per_class, options.linear_runs,
                                    config.seed))
  if options.finetune:
    if network is None:
      notes.append('--finetune: a hand-made encoder has no weights to fine-tune')
    else:
      model, variables, _ = network
      result.update(finetune.finetune(
          model.encoder, variables['params']['encoder'], variables['batch_stats']['encoder'],
          export.ImageRows(support_set, config.image_size), support_labels,
          export.ImageRows(query_set, config.image_size), np.where(known, aligned_labels, -1),
          num_classes,
          options.finetune_samples_per_class, options.finetune_runs, options.finetune_steps,
          config.seed, model.embed_grid))
  result['retrieval'] = metrics.retrieval_metrics(support, support_labels, query, query_labels)
  result['separation'] = metrics.separation_metrics(query, query_labels)
  query_contexts = None
  if support_set.contexts is not None and query_set.contexts is not None:
    query_contexts = query_set.contexts[known]
    _, nearest = index.search(knn.l2_normalize(query), min(8, len(support)))
    result.update(metrics.context_match(nearest, support_set.contexts, query_contexts))
  result['notes'] = notes + fewshot_notes

  rows = pictures.pick_queries(query_labels, options.grid_queries, config.seed)
  similarities, neighbours = pictures.nearest(index, query[rows], options.grid_neighbours)
  show = lambda images, i: images.images(i, i + 1, pictures.CELL)[0]
  query_rows = np.flatnonzero(known)[rows]
  used = sorted(set(neighbours.ravel().tolist()) - {-1})
  support_images = {s: show(support_set, s) for s in used}
  same_context = None if query_contexts is None else (
      support_set.contexts[np.maximum(neighbours, 0)] == query_contexts[rows][:, None])
  pictures.retrieval_grid(
      [show(query_set, q) for q in query_rows], query_labels[rows], support_images,
      support_labels, similarities, neighbours, support_set.class_names,
      os.path.join(out, 'retrieval.png'), os.path.join(out, 'retrieval.html'), same_context)
  same, different = metrics.similarity_pairs(query, query_labels)
  pictures.similarity_histogram(same, different, os.path.join(out, 'similarity.png'),
                                f'{init}: ROC AUC {result["separation"]["roc_auc"]:.3f}')
  atomic.write_json(os.path.join(out, 'metrics.json'), result)
  return result


def table(results) -> str:
  """A Markdown table of the headline numbers, one row per encoder; context_match@8 (with
  its chance rate) when the sets know each crop's context."""
  columns = list(TABLE_COLUMNS)
  with_finetune = any('finetune' in r for r in results)
  if with_finetune:
    columns.append('fine-tuned')
  with_context = all('context_match@8' in r for r in results)
  if with_context:
    columns.append('context_match@8 (chance)')
  lines = ['| encoder | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
  for r in results:
    five = r['fewshot'].get('5')
    cells = [f"{r['knn_top1']:.3f}",
             f"{five['mean']:.3f} ± {five['ci95']:.3f}" if five else 'n/a',
             f"{r['linear_top1']:.3f}", f"{r['retrieval']['mAP']:.3f}",
             f"{r['separation']['roc_auc']:.3f}"]
    if with_finetune:
      tuned = r.get('finetune')
      cells.append(f"{tuned['mean']:.3f} ± {tuned['ci95']:.3f}" if tuned else 'n/a')
    if with_context:
      cells.append(f"{r['context_match@8']:.3f} ({r['context_match_chance']:.3f})")
    lines.append(f"| {r['init']} | " + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def paired_table(results, shots: str = '5') -> str:
  """The first encoder's few-shot accuracy minus each other's, draw by draw: every encoder
  is scored on the same support draws (they follow from the seed and the labels), so the
  per-draw differences, not two overlapping intervals, say which is better. '' without
  the shots or with a single draw."""
  first, others = results[0], results[1:]
  ours = np.asarray(first['fewshot'].get(shots, {}).get('draws', []))
  if len(ours) < 2:
    return ''
  lines = [f"{shots}-shot, {first['init']} minus each encoder on the same support draws "
           '(paired; ± 95% CI):', '', '| against | difference | draws won |', '|---|---|---|']
  for r in others:
    diffs = ours - np.asarray(r['fewshot'][shots]['draws'])
    ci95 = 1.96 * np.std(diffs, ddof=1) / np.sqrt(len(diffs))
    lines.append(f"| {r['init']} | {diffs.mean():+.3f} ± {ci95:.3f} | "
                 f'{int((diffs > 0).sum())} / {len(diffs)} |')
  return '\n'.join(lines)


def run(options):
  """The whole command for parsed flags `options`, after JAX joined any multi-host run;
  writes and prints on process 0 only, which holds WORKDIR/eval's writer lock."""
  eval_dir = os.path.join(options.workdir, 'eval')
  is_chief = jax.process_index() == 0
  try:
    config = runs.load_config(options.workdir)
    support_set = datasets.open_labelled(options.support, 'support', config, '--support')
    query_set = datasets.open_labelled(options.query, 'query', config, '--query')
    check_shared_classes(support_set, query_set, options)
    with (writer_lock.hold(eval_dir, '--workdir', enabled=is_chief),
          disk_space.reporting(eval_dir, '--workdir', 'what evaluation wrote before is kept '
                               '(each file is replaced only when complete); free some space '
                               'and run the same command again')):
      mesh = parallel.make_mesh()
      inits = encoders.INITS if options.init == 'all' else (
          encoders.check_init(options.init),)
      results = [evaluate(init, config, options.workdir, support_set, query_set, mesh,
                          options) for init in inits]
      if not is_chief:
        return
      pictures.training_curves(os.path.join(options.workdir, 'metrics.jsonl'),
                               os.path.join(eval_dir, 'training_curves.png'))
      summary = table(results)
      if len(results) > 1:
        paired = paired_table(results)
        summary += f'\n\n{paired}' if paired else ''
        atomic.write_text(os.path.join(eval_dir, 'comparison.md'),
                          f'Support: {options.support}, query: {options.query}\n\n{summary}\n')
  except ConfigError as e:
    sys.exit(f'error: {e}')
  print(summary)
  for r in results:
    for note in r['notes']:
      print(f"note ({r['init']}): {note}")
  print(f'written: {eval_dir}/')
