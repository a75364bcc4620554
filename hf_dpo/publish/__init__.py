"""What a run leaves for others: the model card, the training plots, the Hub push."""
