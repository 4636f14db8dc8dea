"""vidjax: visual embeddings learned from unlabelled video, and search over them."""
import os

__version__ = '0.9.0'

# XLA:CPU's YNNPACK convolutions, on by default since jaxlib 0.10, run the default model's
# weight gradients (16-32 channels) at 3 GFLOP/s on an AVX2 CPU, and its train step takes
# 2.2x as long as with XLA's own convolutions (README, "Training speed"). Off unless
# XLA_FLAGS names the option; JAX reads it when its CPU backend starts (the first
# computation), so this holds for every vidjax command and for code importing vidjax first.
_YNN_FUSIONS = '--xla_cpu_experimental_ynn_fusion_type'
if _YNN_FUSIONS not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = ' '.join(
      filter(None, [os.environ.get('XLA_FLAGS'), f'{_YNN_FUSIONS}=individual_dot']))
