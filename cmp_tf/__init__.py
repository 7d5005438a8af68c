"""cmp_tf: Cross-Modal Scene Networks in TensorFlow / Keras 3."""

__version__ = "0.1.0"
