"""tada: localize and steer musical concepts in text-to-music diffusion models."""

__version__ = "0.1.0"
