"""Training code for DFL: data, synthetic engine, losses, loop, evaluation. Never imported by inference."""
