"""Where the reference log-probs come from: the kinds, the choice, the precompute pass, the disk cache, engines."""
