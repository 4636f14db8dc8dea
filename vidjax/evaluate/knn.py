"""Weighted k-nearest-neighbour classification on cosine similarity, with faiss.

Votes of the k nearest support embeddings are weighted by exp(similarity / temperature)
(Wu et al. 2018), the protocol of the self-supervised literature (k = 20 or 200, T = 0.07).
"""
import faiss
import numpy as np


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
