"""The ``hf-dpo`` command: parsing and dispatch, the ``train`` command and its run summary."""

from hf_dpo.cli.dispatch import main

__all__ = ["main"]
