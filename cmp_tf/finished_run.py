"""A finished training run: the one way every part of cmp_tf reads a run directory.

  run = finished_run.load_run("runs/c")   # checks the directory before any TensorFlow work
  run.model                               # the trained CrossModalModel (loaded on first use)
  run.spec, run.categories, run.modalities, run.manifest, run.data_dir, run.name
  run.weights_digest                      # which weights a result was computed from
  run.export_versions("nat"), run.latest_export_dir("nat")

The run directory (written by `cmp_tf.training.runner`):
  run.json, flags.txt, spec.json, final.weights.h5, stage_<i>.weights.h5, ckpt/, logs/,
  and what later commands add: eval/, analysis/, export/<modality>/<version>/, search/.

`load_weights` checks every weight's shape against the network *before* Keras reads
the file, so a file made for another architecture is an error naming the layer and
both shapes, not a Keras message.
"""

import dataclasses
import functools
import os

from cmp_tf import fileio
from cmp_tf import modalities as mod_lib

RUN_JSON = "run.json"
FLAGS_TXT = "flags.txt"
SPEC_JSON = "spec.json"
FINAL_WEIGHTS = "final.weights.h5"
EXPORT_DIR = "export"
MODEL_INFO = os.path.join("assets.extra", "cmp_tf.json")
REUSED_FROM = "reused_from"  # run.json: a stage taken from the run that trained it


class RunError(ValueError):
  """The run directory is missing, unfinished, or does not match what was asked."""


def check_finished(run_dir):
  """run.json of a finished run; a RunError saying what is missing (no TensorFlow)."""
  run_dir = os.fspath(run_dir)
  if not os.path.isdir(run_dir):
    raise RunError(f"--run_dir: no such directory: {run_dir}")
  path = os.path.join(run_dir, RUN_JSON)
  if not os.path.isfile(path):
    raise RunError(f"--run_dir: {run_dir} is not a run directory (no {RUN_JSON}); train one "
                   "with python -m cmp_tf.train --flagfile=configs/<method>.flags")
  try:
    state = fileio.read_json(path)
  except ValueError as e:
    raise RunError(f"{path} is not valid JSON ({e}); the run directory is damaged") from None
  if state.get("status") != "complete":
    done = sum(s.get("status") == "complete" for s in state.get("stages", []))
    total = len(state.get("recipe", {}).get("stages", [])) or "?"
    raise RunError(
        f"--run_dir: the run in {run_dir} is not finished (status {state.get('status')!r}, "
        f"{done} of {total} stages complete); resume it with python -m cmp_tf.train "
        f"--flagfile={os.path.join(run_dir, FLAGS_TXT)}")
  for name in (SPEC_JSON, FINAL_WEIGHTS):
    if not os.path.isfile(os.path.join(run_dir, name)):
      raise RunError(f"--run_dir: {run_dir} says it is complete but has no {name}")
  return state


SUMMARY_KINDS = ("fc6", "fc7", "classifier")


def train_seconds(state):
  """(seconds of training, of which taken from other runs) of a run.json: a stage another
  run trained (`cmp_tf.training.stage_reuse`, marked REUSED_FROM) counts its time there, so
  that a row's time is what training it whole costs."""
  reused = sum(s.get("wall_time_s") or 0.0 for s in state.get("stages", [])
               if s.get(REUSED_FROM))
  own = state.get("train_wall_time_s")
  return (None if own is None else round(own + reused, 1)), round(reused, 1)


def training_summary(state):
  """Per stage of a run.json: how long it trained, why it stopped, its best dev accuracy and
  how far its upper layers moved (mean over modality copies) from the stage's start and
  from the source network: what the reproduction report and an evaluation show."""
  out = []
  for stage in state.get("stages", []):
    dev = stage.get("dev_accuracy") or {}
    kinds = stage.get("drift_by_kind") or {}
    out.append({
        "name": stage.get("name"), "steps": stage.get("steps"),
        "best_step": stage.get("best_step"), "stop_reason": stage.get("stop_reason"),
        "dev_accuracy": dev,
        "dev_mean": round(sum(dev.values()) / len(dev), 4) if dev else None,
        "drift": {origin: {k: by_kind[k] for k in SUMMARY_KINDS if k in by_kind}
                  for origin, by_kind in kinds.items()},
        "wall_time_s": stage.get("wall_time_s"), REUSED_FROM: stage.get(REUSED_FROM)})
  return out


def recipe_settings(state):
  """What a run trained with beyond its recipe's shape, from run.json's recipe: the learning
  rate of each stage (once when all agree), every prior's kind and weight, every alignment
  term's weight (and temperature, where the term has one) — e.g. "lr 0.003; GMM prior 0.0001
  (pool5, fc6, fc7); cdann 1 (fc7)"; "-" without a recipe."""
  from cmp_tf.domain_alignment import names

  stages = (state.get("recipe") or {}).get("stages") or []
  if not stages:
    return "-"
  rates = [f"{st['learning_rate']:g}" for st in stages]
  parts = ["lr " + (rates[0] if len(set(rates)) == 1 else " / ".join(rates))]
  for st in stages:
    by_prior = {}
    for prior in st.get("priors") or []:
      by_prior.setdefault((prior["kind"], prior["weight"]), []).append(prior["layer"])
    for (kind, weight), layers in by_prior.items():
      parts.append(f"{kind.upper() if kind == 'gmm' else kind.capitalize()} prior {weight:g} "
                   f"({', '.join(layers)})")
    for use in st.get("alignment") or []:
      text = f"{use['term']} {use['weight']:g}"
      if use["term"] in names.TEMPERATURE_TERMS:
        text += f", temperature {use['temperature']:g}"
      parts.append(f"{text} ({use['layer']})")
  return "; ".join(parts)


def _stored_weight_shapes(h5_file):
  """{layer name: [shape of each of its weights]} of a Keras 3 .weights.h5, read with
  h5py's own walk: Keras writes each layer's weights into a "vars" group whose "name"
  attribute is the layer's name."""
  import h5py

  shapes = {}

  def visit(path, item):
    if isinstance(item, h5py.Group) and path.split("/")[-1] == "vars" and "name" in item.attrs:
      name = item.attrs["name"]
      name = name.decode("utf-8") if isinstance(name, bytes) else str(name)
      if len(item):
        shapes[name] = [tuple(item[str(i)].shape) for i in range(len(item))]

  h5_file.visititems(visit)
  return shapes


def check_weights_file(model, path):
  """Raises RunError when the weights file at `path` does not fit `model`, naming the
  layer and both shapes; returns nothing when every weight fits."""
  import h5py

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise RunError(f"{path}: no such weights file")
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise RunError(f"{path} is not a readable weights file ({e}); it is damaged or "
                   "truncated") from None
  with f:
    stored_shapes = _stored_weight_shapes(f)
  stored = len(stored_shapes)
  expected = sum(1 for layer in model.layers if layer.weights)
  if stored != expected:  # layers without weights (dropout) may differ freely
    raise RunError(f"{path} does not fit the network of this architecture: the file holds "
                   f"{stored} layers with weights, the network {expected} (made by "
                   "another architecture or version of cmp_tf.models?)")
  for layer in model.layers:
    if not layer.weights:
      continue
    have_shapes = stored_shapes.get(layer.name, [])
    expected_shapes = [tuple(w.shape) for w in layer.weights]
    if len(have_shapes) != len(expected_shapes):
      raise RunError(f"{path} does not fit the network of this architecture: layer "
                     f"{layer.name!r} has {len(expected_shapes)} weights, the file "
                     f"{len(have_shapes)} for it (made by another architecture or version "
                     "of cmp_tf.models?)")
    for weight, want, have in zip(layer.weights, expected_shapes, have_shapes):
      if have != want:
        raise RunError(f"{path} does not fit the network of this architecture: "
                       f"{weight.path} is {want} in the network but {have} in the "
                       "file (made by another architecture or version of cmp_tf.models?)")


def load_weights(model, path):
  """model.load_weights(path) after `check_weights_file`."""
  check_weights_file(model, path)
  model.load_weights(os.fspath(path))
  return model


def build_and_load(spec, path):
  """A CrossModalModel of `spec` holding the weights of the file at `path`."""
  from cmp_tf.models import cross_modal
  return load_weights(cross_modal.build_cross_modal_model(spec), path)


def weights_digest(run_dir):
  """Short sha256 of final.weights.h5 and spec.json: which weights a result came from."""
  return fileio.files_digest([os.path.join(run_dir, FINAL_WEIGHTS),
                              os.path.join(run_dir, SPEC_JSON)])


def export_root(run_dir):
  return os.path.join(os.path.abspath(os.fspath(run_dir)), EXPORT_DIR)


def export_versions(model_dir):
  """Version numbers present under one exported model's directory (TF Serving's subdirs)."""
  if not os.path.isdir(model_dir):
    return []
  return sorted(int(n) for n in os.listdir(model_dir)
                if n.isdigit() and os.path.isdir(os.path.join(model_dir, n)))


def read_model_info(version_dir):
  """The cmp_tf.json of one exported version, or None."""
  path = os.path.join(version_dir, MODEL_INFO)
  return fileio.read_json(path) if os.path.isfile(path) else None


@dataclasses.dataclass
class FinishedRun:
  """A finished run: its directory, run.json, architecture, dataset and weights' digest."""
  run_dir: str
  state: dict
  spec: object  # spec_lib.CrossModalSpec
  data_dir: str
  manifest: dict
  weights_digest: str

  @property
  def name(self):
    """The method's display name, e.g. "C: Tune + StatReg (GMM)"."""
    return self.state.get("method_name") or self.state.get("method") or "run"

  @property
  def categories(self):
    """Category names in label order."""
    return list(self.manifest["categories"])

  @property
  def modalities(self):
    """The modalities the network has a branch for, in canonical order."""
    return tuple(m for m in mod_lib.ALL_MODALITIES if m in self.spec.modalities)

  @property
  def sentence_encoder(self):
    return self.manifest["sentence_encoder"]["name"]

  @property
  def weights_path(self):
    return os.path.join(self.run_dir, FINAL_WEIGHTS)

  @functools.cached_property
  def model(self):
    """The trained Keras model (built and loaded once, on first use)."""
    return build_and_load(self.spec, self.weights_path)

  def export_dir(self, modality):
    return os.path.join(export_root(self.run_dir), modality)

  def export_versions(self, modality):
    return export_versions(self.export_dir(modality))

  def latest_export_dir(self, modality):
    """export/<modality>/<newest version>, or None when nothing was exported."""
    found = self.export_versions(modality)
    return os.path.join(self.export_dir(modality), str(found[-1])) if found else None


def load_run(run_dir, *, data_dir=None):
  """The FinishedRun in `run_dir`; a RunError (naming --run_dir / --data_dir) if there is none.

  data_dir: the dataset; default: the one run.json names. It must hold the content the
  run was trained on (the manifest's fingerprint is compared).
  """
  from cmp_tf.data import manifest as manifest_lib
  from cmp_tf.models import spec as spec_lib

  run_dir = os.path.abspath(os.fspath(run_dir))
  state = check_finished(run_dir)
  spec = spec_lib.CrossModalSpec.from_config(fileio.read_json(os.path.join(run_dir, SPEC_JSON)))
  data_dir = data_dir or state.get("data_dir")
  if not data_dir:
    raise RunError(f"--data_dir: the run in {run_dir} does not name its dataset; pass "
                   "--data_dir")
  data_dir = os.path.abspath(os.fspath(data_dir))
  manifest = manifest_lib.read_manifest(data_dir, check_files=False)
  fingerprint = state.get("manifest_fingerprint")
  if fingerprint and manifest_lib.fingerprint(manifest) != fingerprint:
    raise RunError(f"--data_dir: {data_dir} is not the dataset the run in {run_dir} was "
                   "trained on (its content differs); pass the training dataset")
  if len(manifest["categories"]) != spec.num_classes:
    raise RunError(f"--data_dir: {data_dir} has {len(manifest['categories'])} categories but "
                   f"the run's classifier has {spec.num_classes}")
  return FinishedRun(run_dir=run_dir, state=state, spec=spec, data_dir=data_dir,
                     manifest=manifest, weights_digest=weights_digest(run_dir))
