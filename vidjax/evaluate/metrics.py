"""Evaluation metrics on frozen embeddings: kNN, few-shot NN, retrieval, separation.

Pure functions of (support embeddings, labels, query embeddings, labels); cosine similarity
throughout (embeddings are L2-normalised first). The dict keys are the interface of
workdir/eval/<init>/metrics.json.
"""
import numpy as np

from vidjax.evaluate import fewshot, knn


def knn_metrics(support, support_labels, query, query_labels, num_classes: int,
                ks=(1, 20, 200), temperature: float = 0.07, index=None) -> dict:
  """Weighted kNN (votes exp(sim / T)): knn_top1/top5 at k = 20, and top1/top5 for each k.

  index: the faiss index over the support to search (default: exact)."""
  per_k = {}
  for k in ks:
    scores = knn.knn_class_scores(support, support_labels, query, num_classes, k, temperature,
                                  index)
    per_k[str(k)] = {'top1': knn.topk_accuracy(scores, query_labels, 1),
                     'top5': knn.topk_accuracy(scores, query_labels, 5)}
  main = per_k.get('20') or per_k[str(ks[0])]
  return {'knn_top1': main['top1'], 'knn_top5': main['top5'], 'knn': per_k}


def fewshot_metrics(support, support_labels, query, query_labels, shots=(1, 5, 10, 20),
                    draws: int = 10, seed: int = 0) -> tuple:
  """({'n': {mean, std, ci95, draws, classes}}, notes) of 1-NN top-1 with n support items
  per class drawn at random `draws` times. A class with fewer than n items is left out of
  that n (and its queries with it), with a note; an n no class has enough for is skipped.
  ci95 is the half-width of the normal-approximation 95% interval of the mean over draws.
  """
  support_labels, query_labels = np.asarray(support_labels), np.asarray(query_labels)
  classes, counts = np.unique(support_labels, return_counts=True)
  results, notes = {}, []
  for n in shots:
    usable = classes[counts >= n]
    if len(usable) < len(classes):
      notes.append(f'{n}-shot: {len(classes) - len(usable)} classes with fewer than {n} '
                   'support items left out')
    if len(usable) == 0:
      continue
    supports, queries = np.isin(support_labels, usable), np.isin(query_labels, usable)
    accuracies = fewshot.few_shot_nn_accuracy(
        support[supports], support_labels[supports], query[queries], query_labels[queries],
        n, draws, seed).tolist()
    std = float(np.std(accuracies, ddof=1)) if draws > 1 else 0.0
    results[str(n)] = {'mean': float(np.mean(accuracies)), 'std': std,
                       'ci95': 1.96 * std / np.sqrt(draws), 'draws': accuracies,
                       'classes': int(len(usable))}
  return results, notes


def retrieval_metrics(support, support_labels, query, query_labels, ks=(1, 5, 10)) -> dict:
  """Query -> support retrieval: precision@k (share of the top k of the same class) and mAP
  (mean over queries of average precision over the full ranking of the support set)."""
  similarity = knn.l2_normalize(query) @ knn.l2_normalize(support).T
  order = np.argsort(-similarity, axis=1, kind='stable')
  relevant = np.asarray(support_labels)[order] == np.asarray(query_labels)[:, None]
  result = {f'precision@{k}': float(relevant[:, :k].mean()) for k in ks if k <= relevant.shape[1]}
  hits = np.cumsum(relevant, axis=1)
  precision_at_hit = np.where(relevant, hits / np.arange(1, relevant.shape[1] + 1), 0.0)
  num_relevant = relevant.sum(axis=1)
  average_precision = precision_at_hit.sum(axis=1) / np.maximum(num_relevant, 1)
  result['mAP'] = float(average_precision[num_relevant > 0].mean())
  return result


def roc_auc(positive_scores, negative_scores) -> float:
  """P(a random positive scores above a random negative), ties counting half (Mann-Whitney)."""
  scores = np.concatenate([positive_scores, negative_scores])
  ranks = _average_ranks(scores)
  num_pos, num_neg = len(positive_scores), len(negative_scores)
  return float((ranks[:num_pos].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def _average_ranks(values):
  """1-based ranks, tied values sharing their mean rank."""
  order = np.argsort(values, kind='stable')
  sorted_values = values[order]
  ranks = np.empty(len(values))
  start = 0
  boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
  for end in list(boundaries) + [len(values)]:
    ranks[order[start:end]] = (start + end + 1) / 2
    start = end
  return ranks


def similarity_pairs(embeddings, labels, max_pairs: int = 200_000, seed: int = 0) -> tuple:
  """(same-class cosines, different-class cosines) over all pairs, or a random subset of
  max_pairs of them when there are more."""
  embeddings, labels = knn.l2_normalize(embeddings), np.asarray(labels)
  num = len(embeddings)
  total = num * (num - 1) // 2
  if total <= max_pairs:
    first, second = np.triu_indices(num, k=1)
  else:
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, num, (2, max_pairs))
    keep = first != second
    first, second = first[keep], second[keep]
  cosine = np.sum(embeddings[first] * embeddings[second], axis=1)
  same = labels[first] == labels[second]
  return cosine[same], cosine[~same]


def separation_metrics(embeddings, labels, max_pairs: int = 200_000) -> dict:
  """Mean same- vs different-category cosine similarity and the ROC AUC between them."""
  same, different = similarity_pairs(embeddings, labels, max_pairs)
  return {'same_mean': float(same.mean()), 'different_mean': float(different.mean()),
          'roc_auc': roc_auc(same, different)}


def context_match(neighbours, support_contexts, query_contexts, ks=(1, 8)) -> dict:
  """How often a query's nearest support items share its context (what surrounds the object,
  e.g. the background photograph) rather than, or as well as, its category.

  neighbours: [Q, >= max(ks)] support rows nearest each query, best first (-1 = none).
  Returns {'context_match@k': mean share of the k nearest with the query's context, and
  'context_match_chance': the share of all support items with it, averaged over queries};
  an encoder that matches backgrounds scores far above chance. An empty context ('')
  matches nothing.
  """
  support_contexts = np.asarray(support_contexts, object)
  query_contexts = np.asarray(query_contexts, object)
  known = query_contexts != ''
  same = (support_contexts[np.maximum(neighbours, 0)] == query_contexts[:, None])
  same &= (neighbours >= 0) & known[:, None]
  result = {f'context_match@{k}': float(same[:, :k].mean()) for k in ks}
  names, counts = np.unique(support_contexts, return_counts=True)
  share = dict(zip(names, counts / len(support_contexts)))
  result['context_match_chance'] = float(np.mean(
      [share.get(c, 0.0) if c != '' else 0.0 for c in query_contexts]))
  return result
