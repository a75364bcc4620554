"""The one error a bad row or dataset raises."""


class DataFormatError(ValueError):
    """A preference row or dataset that cannot be used as given; the message names the row and field."""
