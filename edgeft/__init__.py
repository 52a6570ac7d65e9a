"""edgeft: fine-tune, compress, export and benchmark models for edge devices from one recipe."""

__version__ = "0.1.0"
