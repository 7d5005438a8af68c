"""cmp_tf: Cross-Modal Scene Networks in TensorFlow / Keras 3."""

from cmp_tf import cpu as _cpu

_cpu.prefer_onednn()  # before anything imports TensorFlow (see cmp_tf.cpu)

__version__ = "0.1.0"
