"""What the shared representation learned (paper section 5.3-5.5).

activations  per-example pool5/fc6/fc7 of a run over each modality's validation split
invariance   t-SNE of fc7 and a linear probe of the modality (Figure 7)
alignment    the unit-alignment score from the synthetic objects (the paper's human study)
units        top-activating examples per unit, DSC words (Figures 2, 6)
inversion    images reconstructed from pool5 across modalities (Figure 8)
html         the one-page index.html of `python -m cmp_tf.analyze`
"""
