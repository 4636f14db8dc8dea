"""Few-shot nearest-neighbour classification: n labelled items per class, repeated draws."""
import numpy as np


def few_shot_nn_accuracy(support: np.ndarray, support_labels: np.ndarray, query: np.ndarray,
                         query_labels: np.ndarray, shots: int, draws: int = 10,
                         seed: int = 0) -> np.ndarray:
  """Top-1 accuracy per draw of 1-nearest-neighbour with `shots` random support items per class.

  Items (images or feature vectors) are flattened and mean-centred per item; similarity is
  cosine. On raw crops this is the baseline a learnt encoder has to beat on this world.
  """
  def features(images):
    flat = images.reshape(len(images), -1).astype(np.float32)
    flat -= flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)

  support_features, query_features = features(support), features(query)
  rng = np.random.default_rng(seed)
  classes = np.unique(support_labels)
  accuracies = []
  for _ in range(draws):
    chosen = np.concatenate([rng.choice(np.flatnonzero(support_labels == c), shots, replace=False)
                             for c in classes])
    nearest = np.argmax(query_features @ support_features[chosen].T, axis=1)
    accuracies.append(np.mean(support_labels[chosen][nearest] == query_labels))
  return np.array(accuracies)
