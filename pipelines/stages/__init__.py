"""The stages a run is made of.

Importing the package registers the built-in fold-feature kinds (``pipelines.stages.fold_feature_kinds``), so
the commands' flags, the configs and bundle loading see them whoever imports first.
"""

from pipelines.stages import fold_feature_kinds  # noqa: F401  (registers the built-in kinds)
