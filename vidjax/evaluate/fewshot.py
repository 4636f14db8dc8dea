"""Few-shot nearest-neighbour classification: n labelled items per class, repeated draws."""
import numpy as np

from vidjax.evaluate import knn


def few_shot_nn_accuracy(support, support_labels, query, query_labels, shots: int,
                         draws: int = 10, seed: int = 0) -> np.ndarray:
  """Top-1 accuracy per draw of cosine 1-nearest-neighbour with `shots` random support
  embeddings per class (every class must have that many)."""
  support, query = knn.l2_normalize(support), knn.l2_normalize(query)
  support_labels, query_labels = np.asarray(support_labels), np.asarray(query_labels)
  rng = np.random.default_rng(seed)
  accuracies = []
  for _ in range(draws):
    chosen = np.concatenate([rng.choice(np.flatnonzero(support_labels == c), shots, replace=False)
                             for c in np.unique(support_labels)])
    nearest = np.argmax(query @ support[chosen].T, axis=1)
    accuracies.append(np.mean(support_labels[chosen][nearest] == query_labels))
  return np.array(accuracies)
