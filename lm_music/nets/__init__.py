"""Plain torch networks: no Lightning, no data, no files. A task's sampler builds one from its hyperparameters."""
