"""Training recipe of photo3d's own depth network (distillation from Tiefenrausch and FastDepth), apart from the runtime.

Entry points (each ``python -m photo3d.train.<name> --help``):

- ``pack``     build a data bundle (resumable; ``--max-mib`` caps it): training photos + both teachers' log-disparity
- ``fit``      time-boxed, resumable training from a bundle (CUDA when available)
- ``qat``      quantization-aware fine-tune, convert to INT8, script, write ``photo3d/models/<name>.pt``
- ``evaluate`` hold-out photos: Pearson correlation of log-disparity with the training label (both
  teachers, Tiefenrausch mirror-averaged) and with Tiefenrausch alone
"""
