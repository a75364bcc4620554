"""Completion log-probs of a batch, from the model's logits or straight from its final hidden states."""
