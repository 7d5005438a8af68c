"""Data layer: the TFRecord format, SynthCMP, the CMPlaces ingester, tf.data input."""
