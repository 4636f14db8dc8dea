"""Evaluation metrics against brute-force numpy computations on small inputs."""
import numpy as np
import pytest

from vidjax.evaluate import linear, metrics


def _clusters(rng, num_classes, per_class, dim=16, noise=0.8):
  centres = rng.normal(size=(num_classes, dim))
  labels = np.repeat(np.arange(num_classes), per_class)
  return centres[labels] + noise * rng.normal(size=(len(labels), dim)), labels


def _brute_force_knn_top1(support, support_labels, query, num_classes, k, temperature):
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  predictions = []
  for q in unit(query):
    similarity = unit(support) @ q
    nearest = np.argsort(-similarity)[:k]
    votes = np.zeros(num_classes)
    for i in nearest:
      votes[support_labels[i]] += np.exp(similarity[i] / temperature)
    predictions.append(np.argmax(votes))
  return np.array(predictions)


def test_knn_agrees_with_brute_force_numpy():
  rng = np.random.default_rng(0)
  support, support_labels = _clusters(rng, 6, 15)
  query, query_labels = _clusters(rng, 6, 10)
  result = metrics.knn_metrics(support, support_labels, query, query_labels, 6, ks=(1, 20, 200))
  for k, votes in ((1, 1), (20, 20), (200, 90)):  # Only 90 support items: all of them vote.
    expected = np.mean(_brute_force_knn_top1(support, support_labels, query, 6, votes, 0.07)
                       == query_labels)
    assert result['knn'][str(k)]['top1'] == pytest.approx(expected)
  assert result['knn_top1'] == result['knn']['20']['top1']
  assert result['knn_top5'] >= result['knn_top1'] and result['knn']['1']['top5'] >= 0


def test_fewshot_reports_mean_std_ci_and_skips_classes_that_are_too_small():
  rng = np.random.default_rng(1)
  support, support_labels = _clusters(rng, 5, 12, noise=0.01)
  support_labels[support_labels == 4] = 3  # Class 3 has 24 items, class 4 none...
  support_labels[:8] = 4  # ... and now 8; class 0 keeps 4, classes 1 and 2 have 12.
  query, query_labels = _clusters(rng, 5, 6, noise=0.01)
  result, notes = metrics.fewshot_metrics(support, support_labels, query, query_labels,
                                          shots=(1, 5, 10, 30), draws=7)
  assert set(result) == {'1', '5', '10'}  # Nobody has 30.
  assert result['1']['classes'] == 5 and result['5']['classes'] == 4
  assert result['10']['classes'] == 3
  assert any(n.startswith('5-shot: 1 classes with fewer than 5') for n in notes)
  assert any(n.startswith('30-shot: 5 classes') for n in notes)
  draws = np.array(result['5']['draws'])
  assert len(draws) == 7 and result['5']['mean'] == pytest.approx(draws.mean())
  assert result['5']['ci95'] == pytest.approx(1.96 * draws.std(ddof=1) / np.sqrt(7))


def test_retrieval_precision_and_map_by_hand():
  # Two queries; support items on a circle so the ranking is known.
  angles = np.array([0.0, 0.1, 0.2, 0.3])
  support = np.stack([np.cos(angles), np.sin(angles)], axis=1)
  support_labels = np.array([0, 1, 0, 1])
  query = np.array([[1.0, 0.0], [np.cos(0.3), np.sin(0.3)]])  # Rankings 0,1,2,3 and 3,2,1,0.
  query_labels = np.array([0, 0])
  result = metrics.retrieval_metrics(support, support_labels, query, query_labels, ks=(1, 2))
  # Query 0: relevant at ranks 1, 3 -> AP (1 + 2/3) / 2; query 1: ranks 2, 4 -> (1/2 + 2/4) / 2.
  assert result['mAP'] == pytest.approx(((1 + 2 / 3) / 2 + (0.5 + 0.5) / 2) / 2)
  assert result['precision@1'] == 0.5 and result['precision@2'] == 0.5


def test_roc_auc_counts_ties_half_like_brute_force():
  rng = np.random.default_rng(2)
  positive = rng.integers(0, 5, 30).astype(float)
  negative = rng.integers(0, 4, 40).astype(float)
  brute = np.mean([(p > n) + 0.5 * (p == n) for p in positive for n in negative])
  assert metrics.roc_auc(positive, negative) == pytest.approx(brute)


def test_separation_is_higher_within_categories():
  rng = np.random.default_rng(3)
  embeddings, labels = _clusters(rng, 4, 20, noise=0.3)
  result = metrics.separation_metrics(embeddings, labels)
  assert result['same_mean'] > result['different_mean'] and result['roc_auc'] > 0.9
  sampled = metrics.separation_metrics(embeddings, labels, max_pairs=500)
  assert abs(sampled['roc_auc'] - result['roc_auc']) < 0.05
  shuffled = metrics.separation_metrics(embeddings, rng.permutation(labels))
  assert abs(shuffled['roc_auc'] - 0.5) < 0.1


def test_linear_probe_learns_separable_classes_and_never_looks_at_the_query_to_tune():
  rng = np.random.default_rng(4)
  items, labels = _clusters(rng, 5, 60, dim=8, noise=1.0)
  support, support_labels, query, query_labels = items[::2], labels[::2], items[1::2], labels[1::2]
  result = linear.linear_probe(support, support_labels, query, query_labels, 5)
  chance_probe = linear.linear_probe(support, support_labels, query,
                                     rng.permutation(query_labels), 5)
  assert result['linear_top1'] > 0.8 and chance_probe['linear_top1'] < 0.4
  # The regularisation was chosen from the support set alone.
  assert result['linear']['weight_decays'] == chance_probe['linear']['weight_decays']
  few = linear.linear_probe(support, support_labels, query, query_labels, 5,
                            samples_per_class=4, runs=3)
  assert len(few['linear']['runs']) == 3 and 0.3 < few['linear_top1'] <= result['linear_top1'] + 0.1


def test_context_match_against_brute_force():
  rng = np.random.default_rng(3)
  support, query = rng.normal(size=(60, 5)), rng.normal(size=(25, 5))
  support_contexts = rng.choice(['cat', 'moon', 'road'], 60)
  query_contexts = rng.choice(['cat', 'moon', 'road', ''], 25)  # '' = unknown
  similarity = (query / np.linalg.norm(query, axis=1, keepdims=True)) @ (
      support / np.linalg.norm(support, axis=1, keepdims=True)).T
  nearest = np.argsort(-similarity, axis=1)[:, :8]
  result = metrics.context_match(nearest, support_contexts, query_contexts)
  for k in (1, 8):
    expected = np.mean([[query_contexts[q] != '' and support_contexts[s] == query_contexts[q]
                         for s in nearest[q, :k]] for q in range(25)])
    np.testing.assert_allclose(result[f'context_match@{k}'], expected)
  chance = np.mean([np.mean(support_contexts == c) if c else 0.0 for c in query_contexts])
  np.testing.assert_allclose(result['context_match_chance'], chance)
  # An encoder that only sees backgrounds: every neighbour shares the query's context.
  same = np.array([[np.flatnonzero(support_contexts == c)[0]] * 8 if c else [0] * 8
                   for c in query_contexts])
  everything = metrics.context_match(same, support_contexts, query_contexts)
  np.testing.assert_allclose(everything['context_match@8'], np.mean(query_contexts != ''))
