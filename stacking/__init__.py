"""The stacker: LightGBM over features and encoder probabilities, calibrated.

Importing the package registers the built-in tie handlings (``stacking.tie_handling``), so a
``StackerConfig`` can check its ``tie_handling`` against them whoever imports it first.
"""

from stacking import tie_handling  # noqa: F401  (registers the built-in options)
