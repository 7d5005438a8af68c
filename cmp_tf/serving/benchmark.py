"""Latency of every exported signature on one batch, on this machine's CPU."""

import io
import os
import statistics
import time

import numpy as np
from PIL import Image

from cmp_tf import finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import signatures

_DESCRIPTIONS = (
    "A small kitchen with a wooden table near the window. Two chairs stand beside it.",
    "There is a red car parked under a large tree. The sky is blue.",
    "A bed with a lamp on the left. A rug lies on the floor. The room is dark.",
    "Waves break on a sandy beach. A boat floats far away.",
)


def _encoded(rng, size, fmt):
  """A smooth random RGB image (gradients plus noise) encoded as `fmt`."""
  y, x = np.mgrid[0:size, 0:size] / max(size - 1, 1)
  base = np.stack([x, y, 1 - x * y], axis=-1) * rng.uniform(0.3, 1.0, 3)
  image = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
  buffer = io.BytesIO()
  Image.fromarray((image * 255).astype(np.uint8)).save(buffer, format=fmt)
  return buffer.getvalue()


def sample_inputs(model_info, batch_size, seed=0):
  """{(signature, label): {input name: numpy batch}} for one exported model's signatures."""
  rng = np.random.default_rng(seed)
  modality = model_info["modality"]
  sigs = model_info["signatures"]
  if mod_lib.is_image(modality):
    size = model_info["image_size"]
    return {
        (signatures.SERVING_DEFAULT, f"PNG {size}x{size}"): {signatures.IMAGES: np.array(
            [_encoded(rng, size, "PNG") for _ in range(batch_size)], dtype=object)},
        (signatures.SERVING_DEFAULT, "JPEG 256x256"): {signatures.IMAGES: np.array(
            [_encoded(rng, 256, "JPEG") for _ in range(batch_size)], dtype=object)},
        (signatures.SERVE_PIXELS, "float pixels"): {signatures.PIXELS: rng.uniform(
            0, 1, (batch_size, size, size, 3)).astype(np.float32)},
    }
  vectors = rng.normal(0, 1, (batch_size, model_info["text_dim"])).astype(np.float32)
  vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
  out = {(signatures.SERVE_VECTORS, "sentence vectors"): {signatures.VECTORS: vectors}}
  if signatures.DESCRIPTIONS in sigs[signatures.SERVING_DEFAULT]["inputs"]:
    texts = [_DESCRIPTIONS[i % len(_DESCRIPTIONS)] for i in range(batch_size)]
    out[(signatures.SERVING_DEFAULT, "descriptions (2-3 sentences)")] = {
        signatures.DESCRIPTIONS: np.array(texts, dtype=object)}
  return out


def time_call(function, inputs, repeats=7):
  """(best, median) wall time (s) of `function(**inputs)` over `repeats` calls after a warm-up.

  The best time is the cost on an otherwise idle machine; the median includes the
  interference of other work on shared cores.
  """
  import tensorflow as tf

  tensors = {k: tf.constant(v) for k, v in inputs.items()}
  function(**tensors)
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    function(**tensors)
    times.append(time.perf_counter() - started)
  return min(times), statistics.median(times)


def benchmark_export(export_dir, version, *, batch_size=32, repeats=7, modalities=None):
  """{modality: {"signature (input)": (best ms, median ms)}} for each exported model."""
  import tensorflow as tf
  import tensorflow_text  # noqa: F401 - registers the tokenizer ops of the DSC model

  results = {}
  for modality in modalities or mod_lib.ALL_MODALITIES:
    version_dir = os.path.join(export_dir, modality, str(version))
    model_info = finished_run.read_model_info(version_dir)
    if model_info is None:
      continue
    loaded = tf.saved_model.load(version_dir)
    results[modality] = {}
    for (name, label), inputs in sample_inputs(model_info, batch_size).items():
      best, median = time_call(loaded.signatures[name], inputs, repeats)
      results[modality][f"{name} ({label})"] = (round(best * 1000, 2), round(median * 1000, 2))
  return results


def format_results(results, batch_size):
  lines = [f"latency of one batch of {batch_size} on CPU, ms (best and median of 7 calls):"]
  for modality, rows in results.items():
    for name, (best, median) in rows.items():
      lines.append(f"  {modality.upper():4s}{name:50s}{best:9.1f}{median:9.1f}")
  return "\n".join(lines)
