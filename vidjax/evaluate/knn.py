"""Weighted k-nearest-neighbour classification on cosine similarity, with faiss.

Votes of the k nearest support embeddings are weighted by exp(similarity / temperature)
(Wu et al. 2018), the protocol of the self-supervised literature (k = 20 or 200, T = 0.07).
"""
import os

import faiss
import numpy as np

from vidjax.errors import ConfigError


def l2_normalize(x):
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def exact_cosine_index(embeddings):
  """An exact inner-product faiss index over L2-normalised embeddings."""
  embeddings = l2_normalize(embeddings)
  index = faiss.IndexFlatIP(embeddings.shape[1])
  index.add(embeddings)
  return index


def knn_class_scores(support, support_labels, query, num_classes: int, k: int,
                     temperature: float, index=None):
  """[Q, num_classes] summed vote weights of each query's k nearest support embeddings.

  index: a faiss inner-product index over the normalised support (default: an exact one);
  an approximate index may find fewer than k neighbours, and the missing ones do not vote.
  """
  k = min(k, len(support))
  index = index if index is not None else exact_cosine_index(support)
  similarity, neighbours = index.search(l2_normalize(query), k)
  votes = np.where(neighbours >= 0, np.exp(similarity / temperature), 0.0)
  neighbours = np.maximum(neighbours, 0)
  scores = np.zeros((len(query), num_classes), np.float64)
  rows = np.repeat(np.arange(len(query)), k)
  np.add.at(scores, (rows, np.asarray(support_labels)[neighbours].ravel()), votes.ravel())
  return scores


def topk_accuracy(scores, labels, topk: int = 1) -> float:
  """Fraction of rows whose label is among the `topk` highest scores (ties: lowest index)."""
  top = np.argsort(-scores, axis=1, kind='stable')[:, :topk]
  return float(np.mean(np.any(top == np.asarray(labels)[:, None], axis=1)))


def _faiss_reason(error: RuntimeError) -> str:
  """The readable part of a faiss C++ error: what follows "failed: ", else its first line."""
  text = str(error)
  return (text.split('failed: ', 1)[1] if 'failed: ' in text else text).splitlines()[0][:200]


def build_index(embeddings, factory: str, out_path: str, flag: str = '--index'):
  """A faiss inner-product index over the L2-normalised embeddings, saved to out_path.

  factory: a faiss index_factory string; 'Flat' is exact (the default), e.g. 'IVF1024,PQ32'
  is approximate and trained on the embeddings themselves.
  """
  vectors = l2_normalize(embeddings)
  try:
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
  except RuntimeError as e:
    raise ConfigError(f'{flag}={factory}: not a faiss index_factory string for '
                      f'{vectors.shape[1]}-d vectors ({_faiss_reason(e)})') from None
  if not index.is_trained:
    try:
      index.train(vectors)
    except RuntimeError as e:
      raise ConfigError(f'{flag}={factory}: cannot be trained on {len(vectors)} vectors '
                        f'({_faiss_reason(e)}); use Flat, or about 39 vectors per IVF list '
                        f'(IVF{max(1, len(vectors) // 39)},Flat)') from None
  index.add(vectors)
  faiss.write_index(index, f'{out_path}.tmp')
  os.replace(f'{out_path}.tmp', out_path)
  return index
