"""Training code for DFL: data, synthetic engine, losses, loop, evaluation (never imported by
inference)."""
