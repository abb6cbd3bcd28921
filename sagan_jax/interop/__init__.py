"""Conversions from other frameworks' checkpoints."""
