r"""Triplet / TCN (Sermanet et al. 2018) on temporal views: margin loss, semi-hard mining.

Anchor and positive are nearby frames cut around the same moving thing; negatives are the
other videos of the global batch, a crop of the anchor frame's own background, and a frame
of the same video far in time cut at the same place.

  python main.py --config=configs/tcn.py --workdir=runs/tcn
  python main.py --config=configs/tcn.py:smoke --workdir=/tmp/smoke   # seconds, tiny model
"""
from vidjax import config_defaults


def get_config(arg=None):
  config = config_defaults.base_config(arg)
  config.method = 'tcn'
  config.head.update(proj_layers=2, proj_output_norm=False, pred_hidden_dim=0)
  config.head.proj_dim = min(128, config.head.proj_dim)
  config.loss.margin = 0.2
  config.data.crop.negatives = 1
  config.data.pairs.update(far_negatives=1, far_radius=16)
  # As N-pair had with the RGB stem; not re-measured with the gradient stem.
  config.data.photometric.solarize_prob = 0.8
  # As N-pair: LARS, lr = 0.075 * sqrt(B), weight decay 1e-6.
  config.optim.update(name='lars', base_lr=0.075, lr_scaling='sqrt', weight_decay=1e-6)
  return config
