"""Training a model: the loop, its config, the objectives (Traditional, SGT, SMOOT) and pruning."""
