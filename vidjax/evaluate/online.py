"""The online kNN monitor the trainer runs: how well do the current features classify
held-out objects of the embedded world?

Support and query are labelled object crops from synthetic videos disjoint from the
training videos and from each other, so the number never reflects memorised training data.
"""
import numpy as np

from vidjax.data.sources import world
from vidjax.evaluate import embed, knn


class KnnMonitor:

  def __init__(self, config, model, mesh):
    crops = dict(seed=config.synthetic.seed, crop_size=config.image_size,
                 frame_size=config.synthetic.frame_size)
    self.support, self.support_labels = world.labelled_crops(
        split='support', per_class=config.monitor.support_per_class, **crops)
    self.query, self.query_labels = world.labelled_crops(
        split='query', per_class=config.monitor.query_per_class, **crops)
    self.num_classes = len(world.CATEGORIES)
    self.k = config.monitor.k
    self.temperature = config.monitor.temperature
    self.mesh = mesh
    self.embed_fn = embed.make_embed_fn(model, mesh)

  def __call__(self, state) -> dict:
    variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
    support = embed.embed_images(self.embed_fn, variables, self.support, self.mesh)
    query = embed.embed_images(self.embed_fn, variables, self.query, self.mesh)
    scores = knn.knn_class_scores(support, self.support_labels, query, self.num_classes,
                                  self.k, self.temperature)
    return {'knn_top1': knn.topk_accuracy(scores, self.query_labels, 1),
            'feature_rank': effective_rank(query)}


def effective_rank(features) -> float:
  """exp(entropy) of the normalised singular values of centred features (Roy & Vetterli).

  Detects partial (dimensional) collapse, which non-contrastive methods suffer when the
  model is small for the data (Li et al. 2022) and which embed_std does not show.
  """
  centred = features - features.mean(axis=0)
  singular = np.linalg.svd(centred.astype(np.float64), compute_uv=False)
  p = singular / max(singular.sum(), 1e-12)
  return float(np.exp(-np.sum(p * np.log(np.maximum(p, 1e-12)))))
