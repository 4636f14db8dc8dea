import numpy as np

from vidjax.evaluate import online


def test_effective_rank_counts_the_dimensions_features_use():
  rng = np.random.default_rng(0)
  isotropic = rng.normal(size=(4000, 16))
  assert 14 < online.effective_rank(isotropic) <= 16
  # Rank-2 features embedded in 16 dimensions: partial collapse.
  collapsed = rng.normal(size=(4000, 2)) @ rng.normal(size=(2, 16))
  assert 1 <= online.effective_rank(collapsed) <= 2.01
