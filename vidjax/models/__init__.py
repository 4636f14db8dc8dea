"""Model construction from a config: `build_model(config)` is the one entry point."""
from vidjax.models.heads import MLP, SSLModel
from vidjax.models.resnet import ARCHITECTURES, ResNet, downsampling


def build_model(config) -> SSLModel:
  """Encoder from `config.model`, projector/predictor from `config.head`."""
  stage_sizes, bottleneck = ARCHITECTURES[config.model.name]
  encoder = ResNet(stage_sizes=stage_sizes, bottleneck=bottleneck,
                   width=config.model.width, cifar_stem=config.model.cifar_stem,
                   # Workdirs written before this option existed used zero-init.
                   zero_init_residual=config.model.get('zero_init_residual', True))
  head = config.head
  projector = MLP(hidden_dim=head.proj_hidden_dim, output_dim=head.proj_dim,
                  num_layers=head.proj_layers, output_norm=head.proj_output_norm)
  predictor = None
  if head.pred_hidden_dim:
    predictor = MLP(hidden_dim=head.pred_hidden_dim, output_dim=head.proj_dim, num_layers=2)
  return SSLModel(encoder=encoder, projector=projector, predictor=predictor)


__all__ = ['ARCHITECTURES', 'MLP', 'ResNet', 'SSLModel', 'build_model', 'downsampling']
