"""Cross-modal scene networks: per-modality branches under a shared fc6/fc7/classifier.

  variants     the image branches' architectures (plain data, no TensorFlow)
  spec         CrossModalSpec, everything that defines a network
  layers       Keras layers of our own (local response normalisation)
  branches     the image and text branches up to pool5
  cross_modal  the network: building it, a branch's features, its upper layers
  transfer     copying weights between networks by layer name
  flops        multiply-adds of a branch

A Keras deserialisation by class name (`keras.saving.load_model`) needs
`cmp_tf.models.cross_modal` imported first: its classes register themselves then.
"""
