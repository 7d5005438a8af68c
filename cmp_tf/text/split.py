"""Splitting a description into sentences, in Python (the dataset build, query checks).

`cmp_tf.text.sentences` applies the same rules as TF ops, for models that take raw text.
"""

import re

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
