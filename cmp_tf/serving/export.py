"""Exports a finished run as one SavedModel per modality, laid out for TF Serving.

`export_run(run_dir)` (the command `python -m cmp_tf.export`, and the end of training)
writes DIR/export/<modality>/<version>/ (saved_model.pb, variables/, and
assets.extra/cmp_tf.json describing the model), DIR/export/export.json (what was
exported) and two TF Serving model config files: DIR/export/models.config
(absolute paths, for tensorflow_model_server on this machine) and
DIR/export/models.docker.config (paths under /models, for the tensorflow/serving
image with DIR/export mounted at /models). The signatures are described in
cmp_tf.serving.signatures.

Without --version the newest version is reused when it holds the same weights,
otherwise the next number is written, so TF Serving picks the new model up; a
version directory appears complete or not at all (built beside it, then renamed).
"""

import datetime
import os
import shutil

from cmp_tf import fileio, finished_run
from cmp_tf import modalities as mod_lib

EXPORT_JSON = "export.json"
CATEGORIES_TXT = os.path.join("assets.extra", "categories.txt")
MODELS_CONFIG = "models.config"
DOCKER_MODELS_CONFIG = "models.docker.config"
DOCKER_ROOT = "/models"


class ExportError(ValueError):
  """An export that cannot be made as asked (the message names the flag)."""


def _choose_version(root, modalities, fingerprint, version, overwrite):
  """(version, done): the version to write and the modalities that already hold these
  weights at it (an export killed half-way is completed, not started again as N+1)."""
  if version is not None:
    if int(version) != version or version < 1:
      raise ExportError(f"--version must be a positive integer, got {version!r}")
    taken = [m for m in modalities
             if version in finished_run.export_versions(os.path.join(root, m))]
    if taken and not overwrite:
      raise ExportError(f"--version={version} already exists for {', '.join(taken)} under "
                        f"{root}; pass --overwrite to replace it or choose another version")
    return int(version), set()
  existing = sorted({v for m in modalities
                     for v in finished_run.export_versions(os.path.join(root, m))})
  if not existing:
    return 1, set()
  latest = existing[-1]
  infos = {m: finished_run.read_model_info(os.path.join(root, m, str(latest)))
           for m in modalities if latest in finished_run.export_versions(os.path.join(root, m))}
  if all(i is not None and i.get("fingerprint") == fingerprint for i in infos.values()):
    return latest, set(infos)
  return latest + 1, set()


def _remove_stale_builds(root, modalities):
  """Removes what a killed export left: its half-built .<version>.building-* directories."""
  for modality in modalities:
    model_dir = os.path.join(root, modality)
    if os.path.isdir(model_dir):
      for name in os.listdir(model_dir):
        if name.startswith(".") and ".building-" in name:
          shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)


def _signature_info(function):
  """{"inputs": {name: {"dtype", "shape"}}, "outputs": [names]} of a traced tf.function."""
  concrete = function.get_concrete_function()
  inputs = {spec.name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
            for spec in concrete.structured_input_signature[0]}
  return {"inputs": inputs, "outputs": sorted(concrete.structured_outputs)}


def _serving_module(info, model, modality):
  """(serving module, note on raw text input or None) for one modality."""
  from cmp_tf.models import cross_modal
  from cmp_tf.serving import signatures
  from cmp_tf.text import graph

  feature_model = cross_modal.feature_model(model, modality)
  name = f"{modality}_serving"
  if mod_lib.is_image(modality):
    return signatures.ImageServingModule(
        feature_model, info.spec.image_size, info.categories, name=name), None
  encoder, note = graph.graph_text_encoder(info.sentence_encoder, info.spec.text_dim)
  module = signatures.TextServingModule(
      feature_model, info.spec.text_dim, info.categories, text_encoder=encoder, name=name)
  return module, note


def _save_version(info, model, modality, model_dir, version):
  """Saves one modality's SavedModel as model_dir/<version>; returns its cmp_tf.json."""
  import tensorflow as tf

  module, text_note = _serving_module(info, model, modality)
  sigs = module.signatures()
  with fileio.atomic_directory(os.path.join(model_dir, str(version))) as building:
    tf.saved_model.save(module, building, signatures=sigs)
    model_info = {
        "modality": modality, "version": version, "fingerprint": info.weights_digest,
        "run_dir": info.run_dir, "data_dir": info.data_dir, "categories": info.categories,
        "image_size": info.spec.image_size if mod_lib.is_image(modality) else None,
        "text_dim": info.spec.text_dim if not mod_lib.is_image(modality) else None,
        "sentence_encoder": info.sentence_encoder if not mod_lib.is_image(modality) else None,
        "raw_text_input": text_note if not mod_lib.is_image(modality) else None,
        "serves_raw_text": getattr(module, "serve_descriptions", None) is not None,
        "embedding": "L2-normalised fc7 (output 'embedding'); 'fc7' is the raw activation",
        "signatures": {k: _signature_info(f) for k, f in sigs.items()},
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    fileio.write_json_atomic(os.path.join(building, finished_run.MODEL_INFO), model_info)
    fileio.write_text_atomic(os.path.join(building, CATEGORIES_TXT),
                             "\n".join(info.categories) + "\n")
  return model_info


def model_config_text(base_paths):
  """TF Serving's --model_config_file text for {model name: base path}."""
  entries = "".join(
      f"  config {{\n    name: \"{name}\"\n    base_path: \"{path}\"\n"
      f"    model_platform: \"tensorflow\"\n  }}\n" for name, path in base_paths.items())
  return f"model_config_list {{\n{entries}}}\n"


def export_run(run_dir, version=None, *, data_dir=None, overwrite=False, verbose=True):
  """Exports every modality of the run in `run_dir`; returns the summary in export.json.

  version: None (reuse the newest if it holds these weights, else the next number)
  or a positive integer (an existing one needs `overwrite`). data_dir overrides
  the dataset recorded in run.json (needed for category names and the encoder).
  """
  info = finished_run.load_run(run_dir, data_dir=data_dir)
  root = finished_run.export_root(info.run_dir)
  modalities = list(info.modalities)
  _remove_stale_builds(root, modalities)
  version, done = _choose_version(root, modalities, info.weights_digest, version, overwrite)
  summary = {"version": version, "fingerprint": info.weights_digest, "export_dir": root,
             "modalities": {}}
  if done and verbose:
    print(f"export: version {version} of {', '.join(sorted(done))} under {root} already "
          "holds these weights", flush=True)
  for modality in modalities:
    if modality not in done:
      model_dir = os.path.join(root, modality)
      _save_version(info, info.model, modality, model_dir, version)
      if verbose:
        size = fileio.directory_size(os.path.join(model_dir, str(version)))
        print(f"export: {modality.upper()} -> {model_dir}/{version} ({size / 2**20:.1f} MiB)",
              flush=True)
  for modality in modalities:
    version_dir = os.path.join(root, modality, str(version))
    model_info = finished_run.read_model_info(version_dir)
    summary["modalities"][modality] = {
        "path": version_dir, "size_bytes": fileio.directory_size(version_dir),
        "signatures": model_info["signatures"],
        "raw_text_input": model_info.get("raw_text_input"),
        "serves_raw_text": model_info.get("serves_raw_text", False)}
  fileio.write_json_atomic(os.path.join(root, EXPORT_JSON), summary)
  fileio.write_text_atomic(os.path.join(root, MODELS_CONFIG), model_config_text(
      {m: os.path.join(root, m) for m in modalities}))
  fileio.write_text_atomic(os.path.join(root, DOCKER_MODELS_CONFIG), model_config_text(
      {m: f"{DOCKER_ROOT}/{m}" for m in modalities}))
  dsc = summary["modalities"].get(mod_lib.DSC)
  if verbose and dsc is not None:
    if dsc["serves_raw_text"]:
      print(f"export: DSC takes raw text through {dsc['raw_text_input']}", flush=True)
    else:
      print(f"export: DSC takes sentence vectors only: {dsc['raw_text_input']}", flush=True)
  return summary
