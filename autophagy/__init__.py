"""autophagy: a simulator of self-consuming training loops for diffusion models (engine; knows no loops)."""
__version__ = "0.1.0"
