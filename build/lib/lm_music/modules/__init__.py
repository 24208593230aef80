"""LightningModules: losses, metrics named `stage/name`, optimisers; one shared step for train/val/test."""
