"""The in-graph sentence splitter agrees with cmp_tf.text.split.split_sentences."""

import random
import re
import unicodedata

import numpy as np
import pytest
import tensorflow as tf

from cmp_tf.text import sentences as tf_sentences
from cmp_tf.text import split as text_split

# The splitter maps every Unicode noncharacter to U+FDD0 (it uses two as marks).
_NONCHARACTER = re.compile("[\ufdd0-\ufdef]")

_ATOMS = ["Mr", "mr", "Dr", "e.g", "i.e", "etc", "Inc", "a.m", "co", "J", "j", "3", "12", "٣",
          "room", "The", "the", "St", "X", ".", ".", ".", "!", "?", "...", "\"", "'", ")", "]",
          "(", "\u201d", "\u2019", "\u201c", " ", " ", " ", "\n", "\n\n", "\n \n", "\t",
          "\u3000", "\xa0", "\u2028", "Ⅻ", "Élan", "ǅ", "İ", "\u212a", "_", "\ufdd1", "\ufdd2",
          "<s>", "a", "B", "-", ",", "日本"]


@pytest.fixture(scope="module")
def split():
  fn = tf.function(tf_sentences.split_sentences,
                   input_signature=[tf.TensorSpec([None], tf.string)])

  def run(texts):
    rows = fn(tf.constant([t.encode("utf-8") for t in texts])).to_list()
    return [[s.decode("utf-8") for s in row] for row in rows]
  return run


def _python_split(text):
  return [_NONCHARACTER.sub("\ufdd0", s) for s in text_split.split_sentences(text)]


@pytest.mark.parametrize("text, expected", [
    ("", []),
    (" \n\t ", []),
    ("... !?", []),
    ("A room. It has a bed! Is it small?", ["A room.", "It has a bed!", "Is it small?"]),
    ("Mr. Smith met Dr. Jones at St. Mary's.", ["Mr. Smith met Dr. Jones at St. Mary's."]),
    ("Bring towels, linens etc. The end.", ["Bring towels, linens etc.", "The end."]),
    ("J. Smith came. He sat.", ["J. Smith came.", "He sat."]),
    ("Item 3. apples. Item 4. Pears", ["Item 3. apples.", "Item 4.", "Pears"]),
    ("It ends here.The next one starts.", ["It ends here.", "The next one starts."]),
    ("\"Quoted.\" Then more", ["\"Quoted.\"", "Then more"]),
    ("First paragraph\n\nsecond one", ["First paragraph", "second one"]),
    ("Line one\nline two", ["Line one line two"]),
    ("A lamp.\u3000\u3000A bed.", ["A lamp.", "A bed."]),
])
def test_hand_written_cases(split, text, expected):
  assert _python_split(text) == expected  # the Python splitter's rules, as read
  assert split([text]) == [expected]


def test_random_texts_agree_with_python_splitter(split):
  rng = random.Random(3)
  texts = ["".join(rng.choice(_ATOMS) + (" " if rng.random() < 0.4 else "")
                   for _ in range(rng.randint(0, 25))) for _ in range(800)]
  for text, got in zip(texts, split(texts)):
    assert got == _python_split(text), f"split differs for {text!r}"


def test_lowercasing_ascii_is_enough_for_abbreviations():
  # The port lowercases ASCII only; fine while no other character lowercases
  # into a letter that an abbreviation uses.
  letters = set("".join(text_split.ABBREVIATIONS))
  for cp in range(0x80, 0x110000):
    char = chr(cp)
    if unicodedata.category(char) != "Cs" and char.lower().isascii():
      assert not set(char.lower()) & letters, f"U+{cp:04X} lowercases to {char.lower()!r}"


def test_average_over_sentences_is_the_mean_per_row():
  rows = tf.RaggedTensor.from_row_lengths(tf.constant(["a", "b", "c"]), [2, 1])
  vectors = tf.constant([[1.0, 0.0], [0.0, 3.0], [5.0, 5.0]])
  got = tf_sentences.average_over_sentences(rows, vectors).numpy()
  np.testing.assert_array_equal(got, [[0.5, 1.5], [5.0, 5.0]])
