"""Contrastive training: synthetic data, dataset loaders, the trainer, the reference model."""
