"""A run's settings: :class:`~pipelines.config.run_config.RunConfig` and the files that fill it."""
