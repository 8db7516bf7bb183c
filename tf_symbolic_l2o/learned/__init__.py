"""Coordinate-wise learned optimizers (DM, RNNprop family) and their persistence."""
