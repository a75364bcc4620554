"""Tokenized rows into the batch of one step: every layout and its collator, and the layout choice."""
