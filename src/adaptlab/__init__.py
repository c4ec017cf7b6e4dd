"""adaptlab: reuse the pretrained text encoder frozen, or adapt it? Answer with evidence."""
__version__ = "0.1.0"
