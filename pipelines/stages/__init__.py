"""The fit's stages and nothing else: folds and features into the stacker's inputs, the fold-feature kinds, the
stacker's cross-fit, the encoders' fine-tuning, the new-source calibrator (``tests/test_layers.py`` lists the modules
allowed here). The run's settings are ``pipelines.config``, the commands' checks ``pipelines.preflight``, the run's
decisions ``pipelines.model``, the experiments' statistics ``pipelines.experiments``.

Importing the package registers the built-in fold-feature kinds (``pipelines.stages.fold_feature_kinds``), so
the commands' flags, the configs and bundle loading see them whoever imports first.
"""

from pipelines.stages import fold_feature_kinds  # noqa: F401  (registers the built-in kinds)
