"""The online kNN monitor the trainer runs: how well do the current features classify
held-out labelled crops, and how often do their neighbours share only a background?

By default the crops are the embedded world's, from videos disjoint from the training
videos and from each other, so the number never reflects memorised training data;
`config.monitor.support` / `config.monitor.query` name any labelled set instead
(`imagefolder:DIR`, `tfds:NAME[:SPLIT]`), so a run on one's own footage watches kNN on
one's own crops.
"""
import numpy as np

from vidjax.errors import ConfigError
from vidjax.evaluate import datasets, embed, knn, metrics


class KnnMonitor:

  def __init__(self, config, model, mesh):
    monitor = config.monitor
    support_set = datasets.open_labelled(monitor.support, 'support', config,
                                         'config.monitor.support')
    query_set = datasets.open_labelled(monitor.query, 'query', config, 'config.monitor.query')
    query_labels, known = datasets.align_query_labels(support_set, query_set)
    if not known.any():
      raise ConfigError(
          f'config.monitor.query={monitor.query}: none of its categories is one of '
          f'config.monitor.support={monitor.support}')
    self.support = support_set.images(0, len(support_set), config.image_size)
    self.query = query_set.images(0, len(query_set), config.image_size)[known]
    self.support_labels, self.query_labels = support_set.labels, query_labels[known]
    self.contexts = None
    if support_set.contexts is not None and query_set.contexts is not None:
      self.contexts = support_set.contexts, query_set.contexts[known]
    self.num_classes = len(support_set.class_names)
    self.k = monitor.k
    self.temperature = monitor.temperature
    self.mesh = mesh
    self.embed_fn = embed.make_embed_fn(model, mesh)

  def __call__(self, state) -> dict:
    variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
    support = embed.embed_images(self.embed_fn, variables, self.support, self.mesh)
    query = embed.embed_images(self.embed_fn, variables, self.query, self.mesh)
    index = knn.exact_cosine_index(support)
    scores = knn.knn_class_scores(support, self.support_labels, query, self.num_classes,
                                  self.k, self.temperature, index)
    result = {'knn_top1': knn.topk_accuracy(scores, self.query_labels, 1),
              'feature_rank': effective_rank(query)}
    if self.contexts is not None:
      _, nearest = index.search(knn.l2_normalize(query), min(8, len(support)))
      result['context_match'] = metrics.context_match(nearest, *self.contexts,
                                                      ks=(8,))['context_match@8']
    return result


def effective_rank(features) -> float:
  """exp(entropy) of the normalised singular values of centred features (Roy & Vetterli).

  Detects partial (dimensional) collapse, which non-contrastive methods suffer when the
  model is small for the data (Li et al. 2022) and which embed_std does not show.
  """
  centred = features - features.mean(axis=0)
  singular = np.linalg.svd(centred.astype(np.float64), compute_uv=False)
  p = singular / max(singular.sum(), 1e-12)
  return float(np.exp(-np.sum(p * np.log(np.maximum(p, 1e-12)))))
