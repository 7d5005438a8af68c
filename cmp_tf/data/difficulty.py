"""Difficulty report: how far a linear classifier on raw inputs gets, per modality.

For image modalities the features are the image downsampled to 8x8 RGB (192
values, antialiased by `features.decode_image`); for DSC the averaged sentence
vectors. Each is standardised and fed to scikit-learn's LogisticRegression,
trained on the train split (subsampled to `max_train` examples) and scored on
the val split. A dataset on which this gets near 100% is too easy to say
anything about cross-modal transfer.

  python -m cmp_tf.report_data --data_dir=DIR
"""

import os
import time
import warnings

import numpy as np

from cmp_tf import fileio
from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib

REPORT_NAME = "difficulty.json"
PIXEL_SIZE = 8
DEFAULT_MAX_TRAIN = 3000


def _load(data_dir, modality, split, pixel_size, max_examples=None, seed=0):
  """(features [N, F] float32, labels [N]) of one modality and split (a random subset)."""
  from cmp_tf.data import input_pipeline
  ds = input_pipeline.modality_dataset(
      data_dir, modality, split, batch_size=512, training=False, max_examples=max_examples,
      seed=seed, image_size=pixel_size if mod_lib.is_image(modality) else None)
  xs, ys = [], []
  for x, y in ds.as_numpy_iterator():
    xs.append(x.reshape(len(x), -1))
    ys.append(y)
  return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def linear_probe(x_train, y_train, x_val, y_val, seed=0):
  """Validation accuracy of a standardised multinomial logistic regression."""
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  from threadpoolctl import threadpool_limits
  model = make_pipeline(StandardScaler(),
                        LogisticRegression(C=1.0, max_iter=200, random_state=seed))
  # One BLAS thread: on a busy 2-core machine more threads spin-wait, ~10x the CPU time.
  with warnings.catch_warnings(), threadpool_limits(1):
    warnings.simplefilter("ignore", ConvergenceWarning)
    model.fit(x_train, y_train)
  return float(np.mean(model.predict(x_val) == y_val))


def difficulty_report(data_dir, modalities=None, max_train=DEFAULT_MAX_TRAIN, seed=0,
                      pixel_size=PIXEL_SIZE):
  """Per modality: linear-probe validation accuracy and chance; returns a JSON-ready dict."""
  manifest = manifest_lib.read_manifest(data_dir)
  built = list(manifest["modalities"])
  modalities = mod_lib.parse_modalities(modalities) if modalities else built
  num_categories = len(manifest["categories"])
  result = {"data_dir": os.path.abspath(os.fspath(data_dir)), "classifier":
            "StandardScaler + LogisticRegression(C=1, lbfgs) trained on train, scored on val",
            "chance": 1.0 / num_categories, "num_categories": num_categories, "modalities": {}}
  for modality in modalities:
    start = time.time()
    x_train, y_train = _load(data_dir, modality, "train", pixel_size, max_train, seed)
    x_val, y_val = _load(data_dir, modality, "val", pixel_size)
    accuracy = linear_probe(x_train, y_train, x_val, y_val, seed=seed)
    if mod_lib.is_image(modality):
      input_name = f"{pixel_size}x{pixel_size} RGB pixels"
    else:
      input_name = f"{x_train.shape[1]}-d averaged sentence vectors"
    result["modalities"][modality] = {
        "val_accuracy": round(accuracy, 4), "input": input_name,
        "num_train": int(len(y_train)), "num_val": int(len(y_val)),
        "seconds": round(time.time() - start, 2)}
  return result


def format_report(result):
  """The report as a small text table."""
  lines = [f"Difficulty report (linear probe; chance {result['chance']:.3f}, "
           f"{result['num_categories']} categories):",
           f"  {'modality':8s} {'val acc':>8s} {'train':>6s} {'val':>5s}  input"]
  for modality, row in result["modalities"].items():
    lines.append(f"  {modality.upper():8s} {row['val_accuracy']:8.3f} {row['num_train']:6d} "
                 f"{row['num_val']:5d}  {row['input']}")
  return "\n".join(lines)


def write_report(data_dir, result):
  """Writes DIR/difficulty.json atomically."""
  fileio.write_json_atomic(os.path.join(os.fspath(data_dir), REPORT_NAME), result)
