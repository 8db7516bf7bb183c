"""Stage 1 of Symbolic L2O, meta-training: compiled truncated unrolls, the epoch trainer, and evaluation against
tuned baselines."""
