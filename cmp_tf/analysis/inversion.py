"""Images reconstructed from pool5 across modalities (paper section 5.5, Figure 8).

Per output modality (NAT, CLP, SPT, LDR) a small decoder maps flattened pool5 to a
small image: dense to 4x4x64, then stride-2 transposed convolutions doubling the
size up to `image_size` (sigmoid output, mean squared error), after Dosovitskiy and
Brox (the paper's [8]) at toy scale. It is trained only on its own modality's
(pool5, image) pairs from the training split (images downscaled by area averaging),
with a fixed input scale (the training features' standard deviation) and seeded
weights and batches. Then every decoder is fed the validation pool5 of every
modality, DSC included (its pool5 is the text branch's projection): if a concept is
encoded alike across modalities, a clip-art scene decoded by the NAT decoder should
look like a photo with the same layout.

Unpaired data has no target for a cross-modal reconstruction, so the numbers are
each decoder's MSE on its own validation set, beside the MSE of always predicting
its mean training image (what a decoder that ignores its input would reach).

Output under `out_dir`: inversion/inversion.png (rows: validation examples of each
input modality; columns: the input, then each decoder's reconstruction) and
inversion/inversion.json.
"""

import os
import time

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.analysis import units as units_lib
from cmp_tf.fileio import write_json_atomic, write_png_atomic

DEFAULT_IMAGE_SIZE = 32
DEFAULT_STEPS = 400
DEFAULT_BATCH_SIZE = 64
DEFAULT_TRAIN_EXAMPLES = 2000
DEFAULT_EXAMPLES_PER_MODALITY = 2
LEARNING_RATE = 1e-3
LOG_EVERY = 25
INVERSION_DIR = "inversion"
INVERSION_PNG = "inversion.png"
INVERSION_JSON = "inversion.json"
_SEED_SIZE = 4
_BASE_CHANNELS = 64
_CELL = 64
_LABEL_WIDTH = 120
_HEADER_HEIGHT = 20
_PAD = 4


def check_image_size(image_size):
  """`image_size` if the decoder can make it (4 * 2^k, k >= 1), else a ValueError."""
  size = image_size
  if isinstance(size, bool) or int(size) != size or size < 2 * _SEED_SIZE:
    raise ValueError(f"image_size: expected 8, 16, 32, 64 ..., got {image_size!r}")
  size = int(size)
  while size > _SEED_SIZE and size % 2 == 0:
    size //= 2
  if size != _SEED_SIZE:
    raise ValueError(f"image_size: expected 4 * 2^k (8, 16, 32, 64 ...), got {image_size!r}")
  return int(image_size)


def downscale(images, image_size):
  """float32 [N, s, s, 3] in [0, 1]: images resized by area averaging (s = image_size)."""
  import tensorflow as tf
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images: expected [N, S, S, 3], got shape {images.shape}")
  if images.shape[1] == image_size and images.shape[2] == image_size:
    return images
  resized = tf.image.resize(images, (image_size, image_size), method="area", antialias=True)
  return np.clip(resized.numpy(), 0.0, 1.0).astype(np.float32)


def build_decoder(input_dim, image_size, *, input_scale=1.0, mean_image=None, seed=0,
                  name="decoder"):
  """keras.Model: [B, input_dim] pool5 -> [B, s, s, 3] image in [0, 1].

  input_scale divides the input (the training features' std), so that one learning
  rate suits every modality's feature scale. mean_image ([s, s, 3] in [0, 1], the
  training images' mean) is added before the sigmoid as a fixed logit offset: the
  decoder starts near its modality's mean image and learns what departs from it
  (without it, the SPT decoder, whose images are mostly white, settled on a plain
  white image, worse than the mean).
  """
  import keras
  image_size = check_image_size(image_size)
  if input_scale <= 0:
    raise ValueError(f"input_scale: expected > 0, got {input_scale!r}")
  upsamplings = int(np.log2(image_size // _SEED_SIZE))
  seeds = iter(range(seed * 100, seed * 100 + 100))

  def init():
    return keras.initializers.GlorotUniform(seed=next(seeds))

  inputs = keras.Input((int(input_dim),), name="pool5")
  x = keras.layers.Rescaling(1.0 / float(input_scale), name="input_scale")(inputs)
  x = keras.layers.Dense(_SEED_SIZE * _SEED_SIZE * _BASE_CHANNELS, activation="relu",
                         kernel_initializer=init(), name="dense")(x)
  x = keras.layers.Reshape((_SEED_SIZE, _SEED_SIZE, _BASE_CHANNELS), name="seed")(x)
  for index in range(1, upsamplings):
    x = keras.layers.Conv2DTranspose(max(16, _BASE_CHANNELS >> index), 4, strides=2,
                                     padding="same", activation="relu",
                                     kernel_initializer=init(), name=f"upconv{index}")(x)
  x = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same", kernel_initializer=init(),
                                   name=f"upconv{upsamplings}")(x)
  if mean_image is not None:
    mean_image = np.clip(np.asarray(mean_image, np.float32), 0.01, 0.99)
    if mean_image.shape != (image_size, image_size, 3):
      raise ValueError(f"mean_image: expected shape {(image_size, image_size, 3)}, got "
                       f"{mean_image.shape}")
    x = x + np.log(mean_image / (1.0 - mean_image))[None]
  outputs = keras.layers.Activation("sigmoid", name="image")(x)
  return keras.Model(inputs, outputs, name=name)


def train_decoder(features, images, *, steps=DEFAULT_STEPS, batch_size=DEFAULT_BATCH_SIZE,
                  seed=0, log_every=LOG_EVERY, name="decoder"):
  """(decoder, [[step, mean training loss of the last log_every steps]]).

  Args:
    features: float32 [N, P] pool5 of one modality's training examples.
    images: float32 [N, s, s, 3] in [0, 1], the same examples downscaled.
    steps: Adam steps (learning rate LEARNING_RATE) of `batch_size` pairs.
    seed: weights and batch order.
    log_every: steps per point of the loss curve.
  """
  import keras
  import tensorflow as tf
  features = np.asarray(features, np.float32)
  images = np.asarray(images, np.float32)
  if features.ndim != 2 or images.ndim != 4 or len(features) != len(images) or not len(images):
    raise ValueError(f"train_decoder: expected [N, P] features and [N, s, s, 3] images, got "
                     f"{features.shape} and {images.shape}")
  for label, value in (("steps", steps), ("batch_size", batch_size), ("log_every", log_every)):
    if isinstance(value, bool) or int(value) != value or value < 1:
      raise ValueError(f"{label}: expected a positive integer, got {value!r}")
  scale = float(features.std()) or 1.0
  decoder = build_decoder(features.shape[1], images.shape[1], input_scale=scale,
                          mean_image=images.mean(axis=0), seed=seed, name=name)
  optimizer = keras.optimizers.Adam(LEARNING_RATE)

  @tf.function
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(decoder(x, training=True) - y))
    optimizer.apply_gradients(zip(tape.gradient(loss, decoder.trainable_variables),
                                  decoder.trainable_variables))
    return loss

  ds = (tf.data.Dataset.from_tensor_slices((features, images))
        .shuffle(len(features), seed=seed, reshuffle_each_iteration=True)
        .repeat().batch(int(batch_size), drop_remainder=len(features) >= batch_size))
  curve, losses = [], []
  for index, (x, y) in enumerate(ds.take(int(steps)), start=1):
    losses.append(float(step(x, y)))
    if index % log_every == 0 or index == steps:
      curve.append([index, round(float(np.mean(losses)), 6)])
      losses = []
  return decoder, curve


def reconstruct(decoder, features, batch_size=256):
  """float32 [N, s, s, 3]: the decoder's images of `features` ([N, P])."""
  return np.asarray(decoder.predict(np.asarray(features, np.float32), batch_size=batch_size,
                                    verbose=0), np.float32)


def mse(a, b):
  """Mean squared error over every pixel and channel."""
  return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def training_pairs(model, data_dir, modality, *, image_size, max_examples=DEFAULT_TRAIN_EXAMPLES,
                   seed=0, batch_size=128):
  """(pool5 [N, P], images [N, s, s, 3]) of the training split of an image modality.

  At most `max_examples` examples (a seeded random subset in record order), through
  the modality's own branch in inference mode.
  """
  from cmp_tf.data import input_pipeline
  from cmp_tf.models import cross_modal
  if not mod_lib.is_image(modality):
    raise ValueError(f"training_pairs: {modality!r} has no images")
  encoder = cross_modal.feature_model(model, modality)
  ds = input_pipeline.modality_dataset(data_dir, modality, "train", batch_size=batch_size,
                                       training=False, image_size=model.spec.image_size,
                                       max_examples=max_examples, seed=seed)
  features, images = [], []
  for x, _ in ds:
    features.append(encoder(x, training=False)["pool5"].numpy().astype(np.float32))
    images.append(downscale(x.numpy(), image_size))
  if not features:
    raise ValueError(f"{data_dir}: the train split of {modality!r} has no examples")
  return np.concatenate(features), np.concatenate(images)


def _to_pixels(image):
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def inversion_grid(rows, decoder_names, title):
  """A PIL image. rows: [(label, input: uint8 image or str, [uint8 image per decoder])]."""
  from PIL import Image, ImageDraw
  columns = 1 + len(decoder_names)
  width = _LABEL_WIDTH + columns * (_CELL + _PAD) + _PAD
  height = _HEADER_HEIGHT * 2 + len(rows) * (_CELL + _PAD) + _PAD
  canvas = Image.new("RGB", (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  text_font, small = units_lib.font(13), units_lib.font(9)
  draw.text((_PAD, 3), title, fill=(20, 20, 20), font=text_font)
  for column, name in enumerate(["input"] + [f"to {n}" for n in decoder_names]):
    draw.text((_LABEL_WIDTH + column * (_CELL + _PAD), _HEADER_HEIGHT + 2), name,
              fill=(20, 20, 20), font=text_font)
  y = _HEADER_HEIGHT * 2
  for label, source, outputs in rows:
    for line_index, line in enumerate(label.split("\n")):
      draw.text((_PAD, y + 4 + line_index * 14), line, fill=(20, 20, 20),
                font=text_font if line_index == 0 else small)
    x = _LABEL_WIDTH
    if isinstance(source, str):
      for line_index, line in enumerate(units_lib.wrap(source, 12)[:6]):
        draw.text((x, y + line_index * 10), line, fill=(20, 20, 20), font=small)
    else:
      canvas.paste(Image.fromarray(source).resize((_CELL, _CELL), Image.Resampling.BILINEAR),
                   (x, y))
    for column, pixels in enumerate(outputs, start=1):
      canvas.paste(Image.fromarray(pixels).resize((_CELL, _CELL), Image.Resampling.BILINEAR),
                   (x + column * (_CELL + _PAD), y))
    y += _CELL + _PAD
  return canvas


def _check_inputs(activations):
  """Every image modality of `activations` must carry its images."""
  for modality, acts in activations.items():
    if mod_lib.is_image(modality) and acts.inputs is None:
      raise ValueError(f"activations[{modality!r}]: no images; extract them with "
                       "keep_inputs=True")


def write_inversions(run_dir, out_dir, *, image_size=DEFAULT_IMAGE_SIZE, steps=DEFAULT_STEPS,
                     seed=0, activations=None, batch_size=DEFAULT_BATCH_SIZE,
                     max_train_examples=DEFAULT_TRAIN_EXAMPLES,
                     examples_per_modality=DEFAULT_EXAMPLES_PER_MODALITY, progress=False):
  """Trains one pool5 decoder per visual modality; writes the cross-modal grid and numbers.

  Args:
    run_dir: a finished run of cmp_tf.train (or its FinishedRun, to load it once).
    out_dir: where inversion/ is written (e.g. RUN/analysis).
    image_size: the reconstructions' size (4 * 2^k: 8, 16, 32, 64 ...).
    steps: training steps per decoder.
    seed: decoder weights, batch order, training subset and the grid's examples.
    activations: {modality: cmp_tf.analysis.activations.Activations} of the validation
      split, extracted with keep_inputs=True (every image branch; the grid's input
      rows are the modalities given); default: every branch, extracted here.
    batch_size: training pairs per step.
    max_train_examples: training examples per decoder (a seeded random subset).
    examples_per_modality: grid rows per input modality.
    progress: print one line per decoder.

  Returns:
    What was written (also saved as inversion/inversion.json): {"png", "json" (relative
    to out_dir), "decoders": {modality: {"train_examples", "steps", "loss_curve",
    "val_mse", "val_mse_mean_image"}}, "rows": [{modality, example_id, category}], ...}.
  """
  started = time.perf_counter()
  image_size = check_image_size(image_size)
  for label, value in (("steps", steps), ("batch_size", batch_size),
                       ("max_train_examples", max_train_examples),
                       ("examples_per_modality", examples_per_modality)):
    if isinstance(value, bool) or int(value) != value or value < 1:
      raise ValueError(f"{label}: expected a positive integer, got {value!r}")
  from cmp_tf.analysis import activations as activations_lib
  if activations is not None:
    _check_inputs(activations)
  run = activations_lib.as_run(run_dir)
  outputs = [m for m in mod_lib.IMAGE_MODALITIES if m in run.spec.modalities]
  if not outputs:
    raise ValueError(f"{run.run_dir}: the network has no image branch to invert")
  if activations is None:
    activations = activations_lib.run_activations(run, max_examples=None, seed=seed,
                                                  keep_inputs=True)
  missing = [m.upper() for m in outputs if m not in activations]
  if missing:
    raise ValueError(f"activations: no {', '.join(missing)} (each decoder is scored on its "
                     "own validation examples)")
  inputs = [m for m in run.modalities if m in activations]
  val_features = {m: activations[m].pool5_maps.reshape(len(activations[m]), -1) for m in inputs}

  decoders, summary = {}, {}
  for index, modality in enumerate(outputs):
    began = time.perf_counter()
    features, images = training_pairs(run.model, run.data_dir, modality, image_size=image_size,
                                      max_examples=max_train_examples, seed=seed)
    extracted = time.perf_counter()
    decoders[modality], curve = train_decoder(features, images, steps=steps,
                                              batch_size=batch_size,
                                              seed=seed * len(outputs) + index,
                                              name=f"{modality}_decoder")
    val_images = downscale(activations[modality].inputs, image_size)
    summary[modality] = {
        "train_examples": len(features), "steps": int(steps), "batch_size": int(batch_size),
        "loss_curve": curve,
        "val_mse": round(mse(reconstruct(decoders[modality], val_features[modality]),
                             val_images), 6),
        "val_mse_mean_image": round(mse(images.mean(axis=0, keepdims=True), val_images), 6),
        "wall_time_s": {"features": round(extracted - began, 2),
                        "training": round(time.perf_counter() - extracted, 2)},
    }
    if progress:
      print(f"{modality.upper()} decoder: {len(features)} training pairs, {steps} steps, "
            f"val MSE {summary[modality]['val_mse']:.4f} (mean image "
            f"{summary[modality]['val_mse_mean_image']:.4f}) in "
            f"{time.perf_counter() - began:.1f} s", flush=True)

  rng = np.random.default_rng(seed)
  grid_rows, rows = [], []
  for modality in inputs:
    acts = activations[modality]
    chosen = np.sort(rng.choice(len(acts), size=min(int(examples_per_modality), len(acts)),
                                replace=False))
    recon = {m: reconstruct(decoders[m], val_features[modality][chosen]) for m in outputs}
    for row, i in enumerate(chosen):
      source = (_to_pixels(acts.inputs[i]) if mod_lib.is_image(modality)
                else str(acts.texts[i]) or "(no text)")
      grid_rows.append((f"{modality.upper()}\n{acts.categories[i]}", source,
                        [_to_pixels(recon[m][row]) for m in outputs]))
      rows.append({"modality": modality, "example_id": str(acts.example_ids[i]),
                   "category": str(acts.categories[i])})
  result = {
      "run_dir": run.run_dir, "method_name": run.name, "weights_digest": run.weights_digest,
      "png": f"{INVERSION_DIR}/{INVERSION_PNG}", "json": f"{INVERSION_DIR}/{INVERSION_JSON}",
      "image_size": image_size, "seed": int(seed), "learning_rate": LEARNING_RATE,
      "inputs": list(inputs), "outputs": outputs, "decoders": summary, "rows": rows,
  }
  out_dir = os.fspath(out_dir)
  title = f"{run.name}: pool5 inverted by each modality's decoder ({image_size}x{image_size})"
  write_png_atomic(os.path.join(out_dir, result["png"]),
                   inversion_grid(grid_rows, [m.upper() for m in outputs], title))
  result["wall_time_s"] = round(time.perf_counter() - started, 2)
  write_json_atomic(os.path.join(out_dir, result["json"]), result)
  return result
