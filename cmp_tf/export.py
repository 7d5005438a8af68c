"""Exports a finished run as one SavedModel per modality, laid out for TF Serving.

  python -m cmp_tf.export --run_dir=DIR [--version=N] [--overwrite] [--benchmark]

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
The training command calls `export_run(run_dir)` at its end.
"""

import datetime
import json
import os
import sys

from cmp_tf import fileio
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import runs

EXPORT_DIR = "export"
EXPORT_JSON = "export.json"
MODEL_INFO = os.path.join("assets.extra", "cmp_tf.json")
CATEGORIES_TXT = os.path.join("assets.extra", "categories.txt")
MODELS_CONFIG = "models.config"
DOCKER_MODELS_CONFIG = "models.docker.config"
DOCKER_ROOT = "/models"


class ExportError(ValueError):
  """An export that cannot be made as asked (the message names the flag)."""


def export_root(run_dir):
  return os.path.join(os.path.abspath(os.fspath(run_dir)), EXPORT_DIR)


def versions(model_dir):
  """Version numbers present under one model's directory (TF Serving's integer subdirs)."""
  if not os.path.isdir(model_dir):
    return []
  return sorted(int(n) for n in os.listdir(model_dir)
                if n.isdigit() and os.path.isdir(os.path.join(model_dir, n)))


def read_model_info(version_dir):
  """The cmp_tf.json of one exported version, or None."""
  path = os.path.join(version_dir, MODEL_INFO)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def latest_version_dir(run_dir, modality):
  """DIR/export/<modality>/<newest version>, or None when nothing was exported."""
  model_dir = os.path.join(export_root(run_dir), modality)
  found = versions(model_dir)
  return os.path.join(model_dir, str(found[-1])) if found else None


def _choose_version(root, modalities, fingerprint, version, overwrite):
  """(version, reuse): the version to write, or the existing one holding these weights."""
  if version is not None:
    if int(version) != version or version < 1:
      raise ExportError(f"--version must be a positive integer, got {version!r}")
    taken = [m for m in modalities if version in versions(os.path.join(root, m))]
    if taken and not overwrite:
      raise ExportError(f"--version={version} already exists for {', '.join(taken)} under "
                        f"{root}; pass --overwrite to replace it or choose another version")
    return int(version), False
  existing = sorted({v for m in modalities for v in versions(os.path.join(root, m))})
  if not existing:
    return 1, False
  latest = existing[-1]
  infos = [read_model_info(os.path.join(root, m, str(latest))) for m in modalities]
  if all(i is not None and i.get("fingerprint") == fingerprint for i in infos):
    return latest, True
  return latest + 1, False


def _signature_info(function):
  """{"inputs": {name: {"dtype", "shape"}}, "outputs": [names]} of a traced tf.function."""
  concrete = function.get_concrete_function()
  inputs = {spec.name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
            for spec in concrete.structured_input_signature[0]}
  return {"inputs": inputs, "outputs": sorted(concrete.structured_outputs)}


def _serving_module(info, model, modality):
  """(serving module, note on raw text input or None) for one modality."""
  from cmp_tf import models
  from cmp_tf.serving import signatures, text_encoders

  feature_model = models.feature_model(model, modality)
  name = f"{modality}_serving"
  if mod_lib.is_image(modality):
    return signatures.ImageServingModule(
        feature_model, info.spec.image_size, info.categories, name=name), None
  encoder, note = text_encoders.graph_text_encoder(info.sentence_encoder, info.spec.text_dim)
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
        "modality": modality, "version": version, "fingerprint": info.fingerprint,
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
    fileio.write_json_atomic(os.path.join(building, MODEL_INFO), model_info)
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
  info = runs.load_run(run_dir, data_dir)
  root = export_root(info.run_dir)
  modalities = list(info.modalities)
  version, reuse = _choose_version(root, modalities, info.fingerprint, version, overwrite)
  summary = {"version": version, "fingerprint": info.fingerprint, "export_dir": root,
             "modalities": {}}
  if reuse:
    if verbose:
      print(f"export: version {version} under {root} already holds these weights", flush=True)
  else:
    model = info.load_model()
    for modality in modalities:
      model_dir = os.path.join(root, modality)
      _save_version(info, model, modality, model_dir, version)
      if verbose:
        size = fileio.directory_size(os.path.join(model_dir, str(version)))
        print(f"export: {modality.upper()} -> {model_dir}/{version} ({size / 2**20:.1f} MiB)",
              flush=True)
  for modality in modalities:
    version_dir = os.path.join(root, modality, str(version))
    model_info = read_model_info(version_dir)
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


# === Command line ===

def _define_flags():
  from absl import flags

  flags.DEFINE_string("run_dir", None, "Run directory of a finished training run.")
  flags.DEFINE_integer("version", None, "Version number to write (default: reuse the newest "
                       "if it holds the same weights, else the next number).")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing --version.")
  flags.DEFINE_string("data_dir", "", "The run's dataset (default: the one in run.json).")
  flags.DEFINE_boolean("benchmark", False, "Then time every signature on a batch of "
                       "--benchmark_batch on CPU and print the latencies.")
  flags.DEFINE_integer("benchmark_batch", 32, "Batch size of --benchmark.")
  flags.mark_flag_as_required("run_dir")


def main(argv):
  from absl import flags, logging

  from cmp_tf.data.errors import DataError

  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    print(f"cmp_tf.export: error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    return 2
  flag_values = flags.FLAGS
  if flag_values.benchmark_batch < 1:
    print("cmp_tf.export: error: --benchmark_batch must be >= 1", file=sys.stderr)
    return 2
  try:
    summary = export_run(flag_values.run_dir, flag_values.version,
                         data_dir=flag_values.data_dir or None,
                         overwrite=flag_values.overwrite)
  except (ExportError, runs.RunError, DataError) as e:
    print(f"cmp_tf.export: error: {e}", file=sys.stderr)
    return 2
  print(f"export: version {summary['version']} of {', '.join(summary['modalities'])}; "
        f"TF Serving config: {os.path.join(summary['export_dir'], MODELS_CONFIG)}")
  if flag_values.benchmark:
    from cmp_tf.serving import benchmark
    results = benchmark.benchmark_export(summary["export_dir"], summary["version"],
                                         batch_size=flag_values.benchmark_batch)
    print(benchmark.format_results(results, flag_values.benchmark_batch))
  return 0


if __name__ == "__main__":
  from absl import app

  _define_flags()
  app.run(main)
