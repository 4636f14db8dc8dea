"""Defaults shared by the four method configs (configs/simsiam.py, npair.py, barlow.py,
tcn.py).

Not a config file to run by itself: each method module calls `base_config(arg)` and
overrides what its paper does differently. These are also the values a run's config.json
is merged over when it predates a field (vidjax/workdir.py): a field added later must
default to the behaviour runs had before it existed. That is why they live in the package
and not in configs/: an installed vidjax reads old runs without a checkout.
"""
import ml_collections


def base_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.method = 'simsiam'  # simsiam | npair | barlow | tcn
  config.seed = 0
  # What a default run fits in 15 minutes on a 2-core CPU (README), at 100-145 pairs/s.
  config.total_steps = 600
  config.batch_size = 128  # Global batch (samples); each sample holds num_positives views.
  config.image_size = 32
  config.log_every = 10
  config.eval_every = 200
  config.checkpoint_every = 200
  config.keep_checkpoints = 3
  # 0: resume from the latest checkpoint in the workdir. N: from checkpoint N (when the
  # latest cannot be restored); the later ones are moved to WORKDIR/set_aside/.
  config.resume_step = 0
  # Train steps per jitted call (a lax.scan over that many batches, the state donated):
  # fewer dispatches and host syncs. Logging, the monitor, checkpoints and interrupts happen
  # between calls, so log_every, eval_every, checkpoint_every and total_steps must be
  # multiples of it.
  config.steps_per_dispatch = 1

  # Encoder: resnet10 | resnet18 | resnet34 | resnet50; width multiplies channels.
  # zero_init_residual: each residual block starts as the identity (last BN scale 0).
  # gradient_stem: the image enters as local histograms of oriented gradients (fixed, HOG's
  # invariances) instead of RGB.
  # bn_per_view: BatchNorm statistics over each view position's B images instead of all B*K.
  # pool_grid: the feature is the last map's mean over each cell of a pool_grid x pool_grid
  # grid, concatenated (1 = global average pooling; 2 keeps where in the crop things are).
  # embed_grid: the same for the embedding that evaluation, the index and export read
  # (0 = pool_grid): a finer grid than training pooled reads more of where things are.
  # dtype: of convolutions and matmuls; 'bfloat16' (mixed precision: parameters, optimiser
  # state, BatchNorm statistics and losses stay float32) is the one to use on a GPU or TPU.
  # torchvision: pad as torchvision's ResNet does (symmetrically), which pretrained weights
  # need.
  # init: a safetensors file of a ResNet-18/34/50 in torchvision's or timm's naming that a
  # new run's encoder starts from (its BatchNorm statistics too; the projector starts
  # random); it needs name and width to match, torchvision=True, cifar_stem=False and
  # gradient_stem=False (models/pretrained.py).
  # cpu_kernels: 'native' has training on a CPU compute each convolution large enough to
  # pay, and its gradients, with oneDNN (models/onednn.py), and BatchNorm's sums in C++
  # (models/batch_norm.py): the same values to float rounding, compiled with g++ on first
  # use; 'xla' leaves everything to XLA.
  config.model = dict(name='resnet10', width=0.25, cifar_stem=True, gradient_stem=True,
                      zero_init_residual=True, bn_per_view=False, pool_grid=1,
                      embed_grid=0, dtype='float32', torchvision=False, init='',
                      cpu_kernels='native')
  # Projector (and SimSiam's predictor when pred_hidden_dim > 0).
  config.head = dict(proj_dim=256, proj_hidden_dim=256, proj_layers=2, proj_output_norm=False,
                     pred_hidden_dim=0)
  # simsiam_target: 'pairs' (SimSiam: each other view's projection) or 'mean' (FastSiam:
  # the mean of the other views' projections, with num_positives > 2).
  # rdm_sigma: SimSiam's targets, each view's batch of projections U S V^T, become
  # U S^(1 + rdm_sigma) V^T (Zhuo et al. 2023's target predictor; -1 whitens); 0 = off.
  # margin: the triplet loss's (tcn), on squared distances of unit vectors (0 to 4).
  # ifm_epsilon, ifm_weight: N-pair's implicit feature modification (losses.info_nce_loss);
  # weight 0 = off.
  # hog_weight: of an added objective, MaskFeat's target without the masking: an MLP on the
  # pooled feature predicts each view's HOG descriptor, taken before colour augmentation
  # when that runs on the device (data.photometric.on_device; losses.hog_prediction_loss);
  # 0 = off.
  # distill_weight: of an added objective, HOG as a teacher of the features evaluation reads
  # (the pooled encoder output): per view, the softmax of its cosines to the batch's other
  # views under HOG (at distill_teacher_temperature) is the target of the same under the
  # features (at distill_temperature; losses.similarity_distillation_loss); 0 = off.
  # distill_hog_cell, distill_hog_block: the teacher's HOG cell (px) and block (cells).
  # mix_weight: a mixup regulariser, a third forward pass of the two views mixed across
  # samples (losses.mixed_loss): Mixed Barlow Twins' (times redundancy_weight) or, for
  # SimSiam, Un-Mix's; 0 = off.
  config.loss = dict(temperature=0.1, redundancy_weight=5e-3, simsiam_target='pairs',
                     rdm_sigma=0.0, margin=0.2, ifm_epsilon=0.1, ifm_weight=0.0,
                     hog_weight=0.0, distill_weight=0.0, distill_temperature=0.1,
                     distill_teacher_temperature=0.02, distill_hog_cell=8,
                     distill_hog_block=2, mix_weight=0.0)
  # name: sgd | lars | adamw. Peak lr = base_lr scaled by batch size (lr_scaling: linear =
  # B/256, sqrt = sqrt(B), none), reached after warmup_steps, then cosine decay to 0.
  # trust_coefficient: LARS's eta (layer step = lr * eta * |w| / |g|). The papers' 0.001 is
  # tuned for hundreds of ImageNet epochs; over a few thousand steps it barely moves the
  # weights, so short runs use 0.02 (solo-learn's CIFAR recipes).
  # predictor_lr_scale / predictor_constant_lr: SimSiam's predictor lr relative to the
  # peak, and held after warmup instead of decayed (see optim.predictor_schedule).
  # bias_lr_scale: the lr of biases and BatchNorm parameters (those LARS neither adapts nor
  # decays) relative to the weights'.
  config.optim = dict(name='sgd', base_lr=0.05, lr_scaling='linear', momentum=0.9,
                      weight_decay=5e-4, warmup_steps=50, trust_coefficient=0.02,
                      predictor_lr_scale=1.0, predictor_constant_lr=False, bias_lr_scale=1.0)

  config.data = dict(
      # Where training frames come from: a source spec string.
      train='synthetic',
      fps=0.0,  # videos: resampled to this rate (0 = native); frames:, npy: their rate (0 = 30).
      frame_size=160,  # File sources shrink frames to this shorter side (0 = as stored).
      tfds_data_dir='',  # tfds: sources: where the prepared datasets are ('' = TFDS default).
      tfds_video_key='',  # tfds: the video feature ('' = the first one).
      num_workers=0,  # Grain worker processes; 0 reads in threads of this process.
      read_threads=2,  # Threads per process (or worker), each assembling whole batches.
      prefetch_batches=4,
      # Temporal sampling: num_positives frames of one video per sample, offsets in frames
      # drawn from `pdf`: uniform (0 < |d| <= tau), gaussian (sigma), consecutive (d in 1..5),
      # decreasing (weight falling linearly with |d| up to tau), video (any other frame).
      # far_negatives: frames of the sample's video more than far_radius frames from the
      # anchor, cut where the first view was, as negatives (TCN's temporal negatives).
      pairs=dict(pdf='uniform', tau=4, sigma=2.0, min_gap=0, num_positives=2,
                 far_negatives=0, far_radius=16),
      # Crops: 'anchored' = one point, a crop of its own size around it in each frame;
      # 'rrc' = independent random-resized crops. scale = crop side / shorter frame side.
      # anchor: 'motion' draws the point where the frames change after undoing camera
      # motion (uniform_share of the time uniformly), 'uniform' always uniformly. track:
      # later views' crops follow what was under the point (block matching), so that the
      # views can be further apart in time and show the object over a changed background.
      # jitter: each anchored view's centre moves off the point by up to this x its size.
      # Object-seeking views. swap_prob: the share of samples whose last view shows its
      # moving region pasted over a frame of another video (background swap). negatives:
      # crops per sample of the first frame's background (away from the point and from
      # motion), negatives for the contrastive losses (npair, tcn).
      # fit: anchored crops are fitted to the moving region under the point: centred on
      # its box, side = margin x its longer side (else scale x the shorter frame side).
      crop=dict(mode='anchored', anchor='motion', uniform_share=0.2, track=False, jitter=0.0,
                scale=(0.25, 0.5), ratio=(0.75, 1.333), flip=True, swap_prob=0.0,
                negatives=0, fit=False, margin=(1.1, 1.6)),
      # Photometric augmentation, per view; applied inside the jitted train step when
      # on_device, else on the host by the data workers. Stronger hue/saturation than
      # SimCLR's: two frames of one object share its colour, which would otherwise be the
      # easiest thing to match, and colour rarely says what an object is. No grayscale or
      # solarising: the gradient stem is already blind to colour and to light and dark, and
      # both erase an object's pattern where its two colours share a luminance
      # (docs/experiments.md; the RGB stem, gradient_stem=False, wanted them at 0.5).
      photometric=dict(on_device=True, jitter_prob=0.8, brightness=0.4, contrast=0.4,
                       saturation=0.8, hue=0.5, grayscale_prob=0.0, blur_prob=0.0,
                       solarize_prob=0.0, invert_prob=0.0, rotate_prob=0.0),
  )
  # The embedded synthetic video world (data.train='synthetic' and the kNN monitor).
  config.synthetic = dict(seed=0, num_videos=1000, num_frames=64, frame_size=96)
  # Online kNN monitor: labelled sets (synthetic, imagefolder:DIR, tfds:NAME[:SPLIT]);
  # synthetic = object crops of held-out videos of the embedded world, per_class of each.
  config.monitor = dict(support='synthetic', query='synthetic', support_per_class=50,
                        query_per_class=100, k=20, temperature=0.07)

  if arg == 'smoke':
    config.total_steps = 6
    config.batch_size = 16
    config.log_every = 1
    config.eval_every = 3
    config.checkpoint_every = 3
    config.model.width = 0.125
    config.head.proj_dim = config.head.proj_hidden_dim = 32
    config.optim.warmup_steps = 2
    config.synthetic.num_videos = 64
    config.monitor.support_per_class = 10
    config.monitor.query_per_class = 10
  elif arg:
    raise ValueError(f"config argument: unknown {arg!r}; expected nothing or 'smoke'")
  return config
