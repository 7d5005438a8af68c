"""Serving modules: one tf.Module per modality, with the signatures TF Serving exposes.

Image modalities (NAT, CLP, SPT, LDR):
  serving_default  images: [N] tf.string, encoded PNG/JPEG/GIF/BMP/WebP of any size,
                   grey, RGB or RGBA; decoded and resized in the graph by
                   `features.decode_image`, the preprocessing training used.
  serve_pixels     pixels: [N, S, S, 3] float32 in [0, 1] (already preprocessed).
DSC:
  serving_default  descriptions: [N] tf.string, raw UTF-8 text; split into sentences,
                   encoded and averaged in the graph (when the dataset's sentence
                   encoder can run in the graph; otherwise serving_default takes vectors).
  serve_vectors    vectors: [N, D] float32 averaged sentence vectors, as in the dataset.

Every signature returns the same outputs, computed in inference mode:
  pool5, fc6, fc7, logits  the network's features (fc7 as the network computes it)
  embedding                fc7 / ||fc7||: the retrieval embedding (cosine = inner product)
  probabilities            softmax of the logits
  category                 [N] tf.string: the most probable category's name
DSC's serving_default also returns `vectors`, the averaged sentence vectors it computed.

Bad input (an empty batch, undecodable bytes, pixels outside [0, 1], a wrong shape,
non-finite vectors, text without a sentence or not UTF-8) fails with
InvalidArgumentError whose message names the input and the batch indices at
fault, before the network runs.
"""

import tensorflow as tf

from cmp_tf.data import features
from cmp_tf.layer_names import FEATURE_LAYERS, LOGITS

SERVING_DEFAULT = "serving_default"
SERVE_PIXELS = "serve_pixels"
SERVE_VECTORS = "serve_vectors"
IMAGES = "images"
PIXELS = "pixels"
DESCRIPTIONS = "descriptions"
VECTORS = "vectors"
OUTPUTS = FEATURE_LAYERS + ("embedding", LOGITS, "probabilities", "category")

# Leading bytes of the formats tf.io.decode_image reads: (offset, magic) pairs, all must match.
_IMAGE_MAGIC = {
    "PNG": ((0, b"\x89PNG\r\n\x1a\n"),),
    "JPEG": ((0, b"\xff\xd8\xff"),),
    "GIF": ((0, b"GIF8"),),
    "BMP": ((0, b"BM"),),
    "WebP": ((0, b"RIFF"), (8, b"WEBP")),
}
_MAGIC_SPAN = 12


def _assert(condition, message, bad=None):
  """An Assert op on `condition` whose message lists the batch indices where `bad` holds."""
  data = [message]
  if bad is not None:
    data = [f"{message}; at batch index:", tf.where(bad)[:, 0]]
  return tf.debugging.Assert(condition, data, summarize=20)


def _after(checks, tensor):
  with tf.control_dependencies(checks):
    return tf.identity(tensor)


def _check_batch(x, name):
  """An Assert that the batch is not empty (the convolutions reject an empty batch)."""
  return tf.debugging.Assert(tf.shape(x)[0] > 0, [f"{name}: the batch is empty"])


def check_encoded_images(images):
  """`images` unchanged, after checks that none is empty and each is a known image format."""
  empty = tf.equal(tf.strings.length(images), 0)
  head = tf.strings.join([images, tf.constant(b"\0" * _MAGIC_SPAN)])
  known = tf.zeros_like(empty)
  for parts in _IMAGE_MAGIC.values():
    match = tf.ones_like(empty)
    for offset, magic in parts:
      match &= tf.equal(tf.strings.substr(head, offset, len(magic)), magic)
    known |= match
  unknown = ~known & ~empty
  return _after([
      _check_batch(images, IMAGES),
      _assert(~tf.reduce_any(empty), f"{IMAGES}: empty image bytes", empty),
      _assert(~tf.reduce_any(unknown),
              f"{IMAGES}: not an encoded image (expected {', '.join(_IMAGE_MAGIC)} bytes; "
              "base64 in a REST request goes in {\"b64\": ...})", unknown),
  ], images)


def _check_trailing_shape(x, name, expected):
  """Shape check [N, *expected] that also runs when the caller bypasses the static shape."""
  shape = tf.shape(x)
  rank_ok = tf.equal(tf.size(shape), 1 + len(expected))
  padded = tf.concat([shape[1:], tf.fill([len(expected)], -1)], axis=0)[:len(expected)]
  ok = rank_ok & tf.reduce_all(tf.equal(padded, expected))
  dims = ", ".join(str(d) for d in expected)
  return tf.debugging.Assert(ok, [f"{name} must have shape [N, {dims}]; got shape", shape],
                             summarize=10)


def _any_per_example(condition):
  """[N, ...] bool -> [N]: whether any value of each example holds (N may be 0)."""
  return tf.reduce_any(condition, axis=tf.range(1, tf.rank(condition)))


def check_pixels(pixels, image_size):
  """`pixels` unchanged, after checks of its shape [N, S, S, 3] and values (finite, in [0, 1])."""
  shape_check = _check_trailing_shape(pixels, PIXELS, [image_size, image_size, 3])
  bad = _any_per_example(~tf.math.is_finite(pixels) | (pixels < 0.0) | (pixels > 1.0))
  return _after([_check_batch(pixels, PIXELS), shape_check, _assert(
      ~tf.reduce_any(bad), f"{PIXELS}: values must be finite and in [0, 1] (scale 8-bit "
      "pixels by 1/255)", bad)], pixels)


def check_vectors(vectors, dim):
  """`vectors` unchanged, after checks of its shape [N, dim] and that all values are finite."""
  shape_check = _check_trailing_shape(vectors, VECTORS, [dim])
  bad = _any_per_example(~tf.math.is_finite(vectors))
  return _after([_check_batch(vectors, VECTORS), shape_check, _assert(
      ~tf.reduce_any(bad), f"{VECTORS}: values must be finite", bad)], vectors)


class _ServingModule(tf.Module):
  """The features of one branch (a keras feature model) plus the named outputs."""

  def __init__(self, feature_model, categories, name):
    super().__init__(name=name)
    self.feature_model = feature_model
    self.categories = tf.constant(list(categories), tf.string)

  def _outputs(self, x):
    features_ = self.feature_model(x, training=False)
    logits = features_["logits"]
    out = {k: tf.identity(features_[k], name=k) for k in FEATURE_LAYERS + (LOGITS,)}
    out["embedding"] = tf.math.l2_normalize(features_["fc7"], axis=1, name="embedding")
    out["probabilities"] = tf.nn.softmax(logits, axis=1, name="probabilities")
    out["category"] = tf.gather(self.categories, tf.argmax(logits, axis=1), name="category")
    return out


class ImageServingModule(_ServingModule):
  """Signatures of an image modality: encoded bytes (serving_default) and float pixels."""

  def __init__(self, feature_model, image_size, categories, name=None):
    super().__init__(feature_model, categories, name)
    self.image_size = int(image_size)
    self.serve_images = tf.function(
        self._serve_images, input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES)])
    self.serve_pixels = tf.function(self._serve_pixels, input_signature=[
        tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32, name=PIXELS)])

  def decode(self, images):
    """[N] encoded images -> [N, S, S, 3] float32 in [0, 1], as in training."""
    images = check_encoded_images(images)
    size = self.image_size
    return tf.map_fn(lambda encoded: features.decode_image(encoded, size), images,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

  def _serve_images(self, images):
    return self._outputs(self.decode(images))

  def _serve_pixels(self, pixels):
    return self._outputs(check_pixels(pixels, self.image_size))

  def signatures(self):
    return {SERVING_DEFAULT: self.serve_images, SERVE_PIXELS: self.serve_pixels}


class TextServingModule(_ServingModule):
  """Signatures of DSC: raw descriptions (serving_default) and sentence vectors.

  `text_encoder` has `describe_to_vector(strings [N]) -> [N, text_dim]` as TF ops
  (cmp_tf.text.usem3_tf.UseM3TF); without one, serving_default takes vectors.
  """

  def __init__(self, feature_model, text_dim, categories, text_encoder=None, name=None):
    super().__init__(feature_model, categories, name)
    self.text_dim = int(text_dim)
    self.text_encoder = text_encoder
    self.serve_vectors = tf.function(self._serve_vectors, input_signature=[
        tf.TensorSpec([None, self.text_dim], tf.float32, name=VECTORS)])
    self.serve_descriptions = None
    if text_encoder is not None:
      self.serve_descriptions = tf.function(
          self._serve_descriptions,
          input_signature=[tf.TensorSpec([None], tf.string, name=DESCRIPTIONS)])

  def _serve_vectors(self, vectors):
    return self._outputs(check_vectors(vectors, self.text_dim))

  def _serve_descriptions(self, descriptions):
    descriptions = _after([_check_batch(descriptions, DESCRIPTIONS)], descriptions)
    vectors = self.text_encoder.describe_to_vector(descriptions)
    out = self._outputs(vectors)
    out[VECTORS] = tf.identity(vectors, name=VECTORS)
    return out

  def signatures(self):
    if self.serve_descriptions is None:
      return {SERVING_DEFAULT: self.serve_vectors, SERVE_VECTORS: self.serve_vectors}
    return {SERVING_DEFAULT: self.serve_descriptions, SERVE_VECTORS: self.serve_vectors}
