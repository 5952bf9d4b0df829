"""The one training loop, checkpoints, evaluation, metrics and seeding."""
