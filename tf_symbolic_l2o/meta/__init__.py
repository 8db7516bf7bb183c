"""Meta-training: compiled truncated unrolls, the epoch trainer, and evaluation against tuned baselines."""
