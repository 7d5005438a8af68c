"""Sentence splitting and per-description averaging in TF ops (for serving raw text).

`split_sentences` applies the rules of `cmp_tf.text.split.split_sentences`
(the Python splitter used to build datasets) with RE2 regexes and a `tf.scan`
over the candidate pieces of all paragraphs at once, so an exported model sees
the same sentences the training data was made from. Python's Unicode notions (whitespace, \\w, \\d,
isupper) become explicit RE2 character classes built from this interpreter's own
Unicode tables, so the two splitters agree character for character.
"""

import functools
import re

import tensorflow as tf

from cmp_tf.text.split import ABBREVIATIONS, SENTENCE_FINAL_ABBREVIATIONS

# Unicode noncharacters, reserved for internal use: any in the input become U+FDD0
# (like them, an unknown character to the sentence encoder), which frees the
# next two to mark paragraph breaks and sentence boundaries.
_NONCHARACTERS = "[\\x{FDD0}-\\x{FDEF}]"
_ESCAPED_NONCHARACTER = "\ufdd0"
_PARAGRAPH_MARK = "\ufdd1"
_BOUNDARY_MARK = "\ufdd2"
_CLOSERS = "[\"')\\]\u201d\u2019]"
_OPENERS = "[(\"'\u201c\u2018]"


def _alternation(words):
  return "(?:" + "|".join(re.escape(w) for w in sorted(words)) + ")"


def _re2_class(chars):
  """An RE2 character class for a sorted list of code points."""
  ranges, start, prev = [], None, None
  for cp in chars:
    if start is None:
      start = prev = cp
    elif cp == prev + 1:
      prev = cp
    else:
      ranges.append((start, prev))
      start = prev = cp
  if start is not None:
    ranges.append((start, prev))
  body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
  return f"[{body}]"


@functools.cache
def _unicode_classes():
  """Python's whitespace, \\w, \\d, isupper and one-letter-initial sets as RE2 classes."""
  chars = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp < 0xE000)
  codes = {
      "space": [ord(c) for c in re.findall(r"\s", chars)],
      "word": [ord(c) for c in re.findall(r"\w", chars)],
      "digit": [ord(c) for c in re.findall(r"\d", chars)],
      "upper": [ord(c) for c in chars if c.isupper()],
      # `len(word) == 1 and word.isalpha() and words[-1].isupper()` on one character.
      "initial": [ord(c) for c in chars
                  if c.isupper() and len(c.lower()) == 1 and c.lower().isalpha()],
  }
  return {name: _re2_class(cps) for name, cps in codes.items()}


def split_sentences(descriptions):
  """Descriptions [N] (UTF-8 tf.string) -> sentences, a RaggedTensor [N, (S)] of tf.string.

  A description without a letter or digit gives an empty row, as the Python
  splitter gives an empty list.
  """
  classes = _unicode_classes()
  space, upper = classes["space"], classes["upper"]
  texts = tf.strings.regex_replace(descriptions, _NONCHARACTERS, _ESCAPED_NONCHARACTER)
  texts = tf.strings.regex_replace(texts, f"\n{space}*\n", _PARAGRAPH_MARK)
  paragraphs = tf.strings.split(texts, _PARAGRAPH_MARK)
  lines = tf.strings.regex_replace(paragraphs.flat_values, f"{space}+", " ")
  lines = tf.strings.regex_replace(lines, "^ | $", "")
  # Python: [.!?]+[closers]*(?=\s|$) | (?<=[a-z])[.!?]+(?=[A-Z]); RE2 has no
  # lookaround, so the context is captured and put back around the mark.
  lines = tf.strings.regex_replace(
      lines, f"([.!?]+{_CLOSERS}*)( |$)|([a-z])([.!?]+)([A-Z])",
      f"\\1\\3\\4{_BOUNDARY_MARK}\\2\\5")
  pieces = tf.strings.split(lines, _BOUNDARY_MARK)  # [paragraphs, (pieces)], >= 1 each

  # The pieces of each paragraph, padded to [paragraphs, K]; the boundary decisions
  # run left to right over K with every paragraph at once. One spare column keeps
  # K >= 1 (tf.scan cannot stack zero steps of unknown shape: an empty batch).
  padded = pieces.to_tensor(default_value="")
  padded = tf.concat([padded, tf.fill([tf.shape(padded)[0], 1], "")], axis=1)
  lengths = pieces.row_lengths()
  position = tf.range(tf.shape(padded, out_type=tf.int64)[1])[None, :]
  valid = position < lengths[:, None]
  is_tail = tf.equal(position, lengths[:, None] - 1)
  # First character of the text after each boundary (the next piece, left-stripped).
  rest = tf.concat([padded[:, 1:], tf.fill([tf.shape(padded)[0], 1], "")], axis=1)
  rest = tf.where(is_tail, "", tf.strings.regex_replace(rest, "^ +", ""))
  rest_upper = tf.strings.regex_full_match(rest, f"(?s){upper}.*")

  word_re = _alternation(ABBREVIATIONS)
  final_re = _alternation(SENTENCE_FINAL_ABBREVIATIONS)

  def step(state, elems):
    pending = state[0]
    piece, tail, next_text, next_upper = elems
    text = pending + piece
    closed = tf.strings.regex_replace(text, f"{_CLOSERS}+$", "")
    before = tf.strings.regex_replace(closed, "\\.$", "")
    has_word = tf.strings.regex_full_match(before, ".*[^ ].*")
    token = tf.strings.regex_replace(before, "^(?:.* )?([^ ]+) *$", "\\1")
    orig = tf.strings.regex_replace(token, f"^{_OPENERS}+", "")
    word = tf.strings.lower(orig)  # ASCII: only 'K' (Kelvin) lowers into ASCII, in no abbreviation
    number = tf.strings.regex_full_match(word, f"{classes['digit']}+") & ~next_upper
    initial = tf.strings.regex_full_match(orig, classes["initial"])
    abbreviation = tf.strings.regex_full_match(word, word_re) & ~(
        tf.strings.regex_full_match(word, final_re) & next_upper)
    keep_going = (~tail & tf.not_equal(next_text, "")
                  & tf.strings.regex_full_match(closed, "(?s).*\\.") & has_word
                  & (number | initial | abbreviation))
    return (tf.where(keep_going, text, ""), ~keep_going, tf.where(keep_going, "", text))

  paragraphs_count = tf.shape(padded)[0]
  _, emitted, sentences = tf.scan(
      step, tuple(tf.transpose(t) for t in (padded, is_tail, rest, rest_upper)),
      initializer=(tf.fill([paragraphs_count], ""), tf.zeros([paragraphs_count], tf.bool),
                   tf.fill([paragraphs_count], "")))
  emitted, sentences = tf.transpose(emitted), tf.transpose(sentences)
  keep = valid & emitted & tf.strings.regex_full_match(sentences, f"(?s).*{classes['word']}.*")
  sentences = tf.strings.regex_replace(tf.boolean_mask(sentences, keep), "^ +| +$", "")
  owner = tf.broadcast_to(paragraphs.value_rowids()[:, None], tf.shape(padded, out_type=tf.int64))
  return tf.RaggedTensor.from_value_rowids(
      sentences, tf.boolean_mask(owner, keep), nrows=paragraphs.nrows())


def average_over_sentences(sentences, vectors):
  """Mean of each row's sentence vectors: ragged [N, (S)] and [sum S, D] -> [N, D].

  Accumulates in float64 like the Python path. Rows must be non-empty.
  """
  counts = sentences.row_lengths()
  sums = tf.math.unsorted_segment_sum(
      tf.cast(vectors, tf.float64), sentences.value_rowids(), sentences.nrows())
  return tf.cast(sums / tf.cast(counts, tf.float64)[:, None], tf.float32)
