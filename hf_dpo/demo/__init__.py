"""Embedded CPU demo: a concise-answer preference task."""
