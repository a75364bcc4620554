"""What watches a run from below the trainer: the doctor, samples, generation, pair metrics."""
