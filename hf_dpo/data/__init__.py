"""Preference rows in, tokenized rows out: the shapes rows come in, tokenization, preparation, column names."""
