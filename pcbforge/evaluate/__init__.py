"""Evaluate a model's predictions against a dataset's labels."""
