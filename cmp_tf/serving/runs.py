"""What export, search and the projector need to know about a finished training run."""

import dataclasses
import hashlib
import json
import os
import re

from cmp_tf.data import manifest as manifest_lib
from cmp_tf.training import runner


class RunError(ValueError):
  """The run directory is missing, unfinished or does not match what was asked."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
  """A finished run: its directory, architecture, dataset manifest and weights' fingerprint."""
  run_dir: str
  spec: object  # models.CrossModalSpec
  data_dir: str
  manifest: dict
  fingerprint: str

  @property
  def categories(self):
    return manifest_lib.label_names(self.manifest)

  @property
  def modalities(self):
    return tuple(self.spec.modalities)

  @property
  def sentence_encoder(self):
    return self.manifest["sentence_encoder"]["name"]

  def load_model(self):
    """The trained Keras model (final.weights.h5); weights that do not fit are a RunError."""
    try:
      model, _ = runner.load_final_model(self.run_dir)
    except ValueError as e:
      shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", str(e))
      where = re.search(r"Variable path=(\S+),", str(e))
      detail = (f": {where.group(1) if where else 'a variable'} is {shapes.group(1)} in the "
                f"network but {shapes.group(2)} in the file" if shapes else "")
      raise RunError(f"{os.path.join(self.run_dir, runner.FINAL_WEIGHTS)} does not fit the "
                     "network its spec.json describes, as this version of cmp_tf builds it"
                     f"{detail}; retrain the run with this version") from None
    return model


def weights_fingerprint(run_dir):
  """sha256 (first 16 hex digits) of final.weights.h5 and spec.json: which weights these are."""
  digest = hashlib.sha256()
  for name in (runner.FINAL_WEIGHTS, runner.SPEC_JSON):
    with open(os.path.join(run_dir, name), "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  return digest.hexdigest()[:16]


def load_run(run_dir, data_dir=None):
  """RunInfo of a finished run; `data_dir` overrides the dataset recorded in run.json."""
  from cmp_tf import models

  run_dir = os.path.abspath(os.fspath(run_dir))
  if not os.path.isdir(run_dir):
    raise RunError(f"run directory {run_dir} does not exist")
  for name in (runner.FINAL_WEIGHTS, runner.SPEC_JSON):
    if not os.path.isfile(os.path.join(run_dir, name)):
      raise RunError(f"{run_dir} has no {name}: the run has not finished (rerun its "
                     "training command to complete it)")
  with open(os.path.join(run_dir, runner.SPEC_JSON), encoding="utf-8") as f:
    spec = models.CrossModalSpec.from_config(json.load(f))
  if not data_dir:
    run_json = os.path.join(run_dir, runner.RUN_JSON)
    state = {}
    if os.path.isfile(run_json):
      with open(run_json, encoding="utf-8") as f:
        state = json.load(f)
    data_dir = state.get("data_dir")
    if not data_dir:
      raise RunError(f"{run_json} does not name the run's dataset; pass its directory "
                     "with --data_dir")
  data_dir = os.path.abspath(os.fspath(data_dir))
  manifest = manifest_lib.read_manifest(data_dir, check_files=False)
  if len(manifest["categories"]) != spec.num_classes:
    raise RunError(f"dataset {data_dir} has {len(manifest['categories'])} categories but "
                   f"the run's classifier has {spec.num_classes}; pass the run's dataset "
                   "with --data_dir")
  return RunInfo(run_dir=run_dir, spec=spec, data_dir=data_dir, manifest=manifest,
                 fingerprint=weights_fingerprint(run_dir))
