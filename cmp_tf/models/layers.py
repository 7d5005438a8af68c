"""Custom Keras layers of the scene networks."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="cmp_tf")
class LocalResponseNormalization(keras.layers.Layer):
  """AlexNet's cross-channel LRN: x / (bias + alpha * sum_{|c'-c|<=r} x_c'^2) ** beta.

  The defaults are Caffe's AlexNet/Places-CNN setting (local_size 5, alpha 1e-4,
  k 1, beta 0.75); TensorFlow's `alpha` is Caffe's divided by local_size.
  """

  def __init__(self, depth_radius=2, bias=1.0, alpha=2e-5, beta=0.75, **kwargs):
    super().__init__(**kwargs)
    if depth_radius < 0:
      raise ValueError(f"LocalResponseNormalization: depth_radius {depth_radius} < 0")
    self.depth_radius = int(depth_radius)
    self.bias = float(bias)
    self.alpha = float(alpha)
    self.beta = float(beta)

  def call(self, inputs):
    return tf.nn.local_response_normalization(
        inputs, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
        beta=self.beta)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha,
                  beta=self.beta)
    return config
