"""Training: the custom Transformer from scratch, fine-tuning, checkpoints in the store."""
