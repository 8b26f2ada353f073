"""Synthetic PCB tiles, photo-like images and messy test corpora."""
