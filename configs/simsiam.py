r"""SimSiam (Chen & He 2021) on temporal pairs of the embedded synthetic video world.

  python main.py --config=configs/simsiam.py --workdir=runs/simsiam
  python main.py --config=configs/simsiam.py:smoke --workdir=/tmp/smoke   # seconds, tiny model
"""
from configs import common


def get_config(arg=None):
  config = common.base_config(arg)
  config.method = 'simsiam'
  # Projector ends in BN; predictor is a bottleneck MLP (paper: 2048 -> 512 -> 2048).
  config.head.proj_layers = 2
  config.head.proj_output_norm = True
  config.head.pred_hidden_dim = config.head.proj_dim // 4
  # As the official code, which forwards x1 and x2 separately: BatchNorm statistics per view.
  config.model.bn_per_view = True
  # Tighter crops, always around motion: more of each view is the object. SimSiam still
  # learns little on the embedded world (docs/experiments.md).
  config.data.crop.update(scale=(0.12, 0.25), uniform_share=0.0)
  # Unlike the other two, SimSiam did not gain from dropping grayscale and solarising under
  # the gradient stem (docs/experiments.md), so it keeps them on half the views.
  config.data.photometric.update(grayscale_prob=0.5, solarize_prob=0.5)
  # Paper: SGD, lr = 0.05 * B / 256, momentum 0.9, wd 1e-4 (5e-4 in its CIFAR recipe).
  config.optim.update(name='sgd', base_lr=0.05, lr_scaling='linear', weight_decay=5e-4)
  return config
