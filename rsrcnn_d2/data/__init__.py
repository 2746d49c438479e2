"""Data: synthetic slices, mask <-> instance conversion."""
