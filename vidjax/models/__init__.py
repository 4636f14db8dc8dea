"""Model construction from a config: `build_model(config)` is the one entry point."""
from vidjax import hog
from vidjax.errors import ConfigError, require
from vidjax.models import pretrained
from vidjax.models.heads import MLP, SSLModel
from vidjax.models.resnet import ARCHITECTURES, DTYPES, ResNet, downsampling


_HOG_HIDDEN_DIM = 512


def build_model(config) -> SSLModel:
  """Encoder from `config.model`, projector/predictor from `config.head`, and with
  `config.loss.hog_weight` the HOG-prediction head."""
  stage_sizes, bottleneck = ARCHITECTURES[config.model.name]
  dtype = DTYPES[config.model.dtype]
  encoder = ResNet(stage_sizes=stage_sizes, bottleneck=bottleneck,
                   width=config.model.width, cifar_stem=config.model.cifar_stem,
                   gradient_stem=config.model.gradient_stem,
                   zero_init_residual=config.model.zero_init_residual,
                   pool_grid=config.model.pool_grid, dtype=dtype,
                   torchvision=config.model.torchvision,
                   native_kernels=config.model.cpu_kernels == 'native')
  head = config.head
  projector = MLP(hidden_dim=head.proj_hidden_dim, output_dim=head.proj_dim,
                  num_layers=head.proj_layers, output_norm=head.proj_output_norm, dtype=dtype)
  predictor = None
  if head.pred_hidden_dim:
    predictor = MLP(hidden_dim=head.pred_hidden_dim, output_dim=head.proj_dim, num_layers=2,
                    dtype=dtype)
  hog_head = None
  if config.loss.hog_weight:
    hog_head = MLP(hidden_dim=_HOG_HIDDEN_DIM, output_dim=hog.hog_size(config.image_size),
                   num_layers=2, dtype=dtype)
  return SSLModel(encoder=encoder, projector=projector, predictor=predictor,
                  hog_head=hog_head, embed_grid=config.model.embed_grid)


def check_config(config):
  """config.model and config.head (and the image size they must accept): one ConfigError."""
  model = config.model
  require(model.name in ARCHITECTURES, f'config.model.name: unknown {model.name!r}; expected '
          f'one of {", ".join(ARCHITECTURES)}')
  require(model.width > 0, f'config.model.width must be > 0, got {model.width}')
  require(model.dtype in DTYPES, f'config.model.dtype: unknown {model.dtype!r}; expected one '
          f'of {", ".join(DTYPES)}')
  require(model.cpu_kernels in ('native', 'xla'), 'config.model.cpu_kernels: unknown '
          f'{model.cpu_kernels!r}; expected native or xla')
  factor = downsampling(model.name, model.cifar_stem)
  require(config.image_size >= factor,
          f'config.image_size={config.image_size} is too small for {model.name} '
          f'(cifar_stem={model.cifar_stem}), which downsamples {factor}x; use >= {factor}')
  check_grids(config)
  if model.init:
    pretrained.check_config(model, model.init)
  loss = config.loss
  for name, cell, block in (('hog_weight', 8, 2),
                            ('distill_weight', loss.distill_hog_cell, loss.distill_hog_block)):
    if config.loss[name]:
      try:
        hog.hog_size(config.image_size, cell, block)
      except ValueError as error:
        raise ConfigError(f'config.loss.{name}={config.loss[name]}: config.image_size='
                          f'{config.image_size}: {error}') from None
  head = config.head
  for name in ('proj_dim', 'proj_hidden_dim', 'proj_layers'):
    require(isinstance(head[name], int) and head[name] > 0,
            f'config.head.{name} must be a positive integer, got {head[name]!r}')
  require(isinstance(head.pred_hidden_dim, int) and head.pred_hidden_dim >= 0,
          f'config.head.pred_hidden_dim must be an integer >= 0 (0 = no predictor), got '
          f'{head.pred_hidden_dim!r}')


def check_grids(config):
  """config.model.pool_grid and embed_grid against the last feature map's side: one
  ConfigError naming every grid that does not divide it."""
  model = config.model
  factor = downsampling(model.name, model.cifar_stem)
  side = -(-config.image_size // factor)  # Each stride-2 stage rounds up ('SAME' padding).
  where = f'the last feature map\'s side, {side} at config.image_size={config.image_size}'
  wrong = []
  if not (isinstance(model.pool_grid, int) and model.pool_grid > 0
          and side % model.pool_grid == 0):
    wrong.append(f'config.model.pool_grid={model.pool_grid!r}: expected a positive integer '
                 f'dividing {where}')
  if not (isinstance(model.embed_grid, int) and model.embed_grid >= 0
          and (model.embed_grid == 0 or side % model.embed_grid == 0)):
    wrong.append(f'config.model.embed_grid={model.embed_grid!r}: expected 0 (as pool_grid) '
                 f'or a positive integer dividing {where}')
  require(not wrong, '; '.join(wrong))


__all__ = ['ARCHITECTURES', 'MLP', 'ResNet', 'SSLModel', 'build_model', 'check_config',
           'check_grids', 'downsampling']
