"""Keras layers shared by extraction and heads (pooling), importable without either package."""
