"""SynthCMP: the embedded, procedural stand-in for the CMPlaces dataset.

A readable scene grammar (`data/scene_grammar.json`) defines categories named after
Places205 categories as backgrounds plus distributions over a shared object vocabulary.
Each example samples its own scene instance and draws it in one modality: photo-like
(NAT), clip art (CLP), line drawing (LDR), spatial text (SPT) or a description (DSC).
"""

from cmp_tf.data.synthcmp.grammar import Grammar, load_grammar
from cmp_tf.data.synthcmp.heldout import HELDOUT_FILE, default_heldout_categories
from cmp_tf.data.synthcmp.records import (
    example_rng,
    generate_records,
    render_record,
    render_spatial_text,
)

# Bumped whenever the same build settings render different examples (2: descriptions written
# like CMPlaces', Places205-scale categories), so that cached datasets are rebuilt.
GENERATOR_VERSION = 2

__all__ = [
    "GENERATOR_VERSION",
    "Grammar",
    "HELDOUT_FILE",
    "default_heldout_categories",
    "example_rng",
    "generate_records",
    "load_grammar",
    "render_record",
    "render_spatial_text",
]
