"""Evaluates a trained run, or the source network, into the paper's Tables 1-5.

`evaluate_run` (`python -m cmp_tf.evaluate --run_dir=DIR`): a run gets Tables 1 (mAP) and 2 (PR@10) on fc7 for the 20 ordered
modality pairs, Table 3 (mean mAP per layer) and, when it was trained zero-shot,
Tables 4 (accuracy on the held-out categories) and 5 (retrieval among them). With
--subspace_alignment it also gets the subspace-alignment rows computed on its own
fc7 features (for BL-Individual: the paper's "Subsp. Align. + PlacesNet Finetune"):
Tables 1-2 for a normal run, Tables 4-5 for a zero-shot one.

`evaluate_source` (`--source_dir`) evaluates the cached source network (`<cache>/source/<key>`, or the
source a run directory's run.json names): the paper's "BL-PlacesNet" row of Table 4
and the "Subsp. Align. + PlacesNet" rows of Tables 1, 2, 4 and 5, on its fc7
features of the four visual modalities (read through its NAT branch).

The run's page, DIR/eval/index.html (`cmp_tf.eval.page`), shows Figure 5 on this run, the
query -> target mAP matrices and the dev curves.

Retrieval is exact over all queries unless --num_queries is given (the paper's
protocol: 1000 random queries); similarity is cosine, AP non-interpolated with ties
broken pessimistically (`cmp_tf.eval.retrieval`). Output, in DIR/eval (a run) or
--out_dir (the source; default <source>/eval): tables.md, results.json, and the
features used, features/<pool5|fc6|fc7|logits>/<modality>.npz (validation sets;
arrays features, labels, example_ids) plus, for subspace alignment,
features_train/fc7/<modality>.npz (training sets, every category).
"""

import os
import time

from cmp_tf import fileio, finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.eval import embeddings, page, tables, zero_shot
from cmp_tf.eval import rows as rows_lib
from cmp_tf.fileio import file_digest
from cmp_tf.layer_names import FEATURE_LAYERS

EVAL_DIR = "eval"
RESULTS_JSON = "results.json"
TABLES_MD = "tables.md"
FEATURES_DIR = "features"
TRAIN_FEATURES_DIR = "features_train"
SA_COMPONENTS = 100
SA_PLACESNET_ROW = "Subsp. Align. + PlacesNet"
SA_FINETUNE_ROW = "Subsp. Align. + PlacesNet Finetune"
SOURCE_ROW = "BL-PlacesNet"
FORMAT_VERSION = 1


def single_threaded_blas():
  """A context in which NumPy/scikit-learn BLAS use one thread.

  The metrics' matrices are small (thousands of rows), and on a machine whose cores are
  busy more BLAS threads spin-wait: a PCA of 9000 x 512 took 10.9 s with the default
  threads and 0.35 s with one on a loaded 2-core machine.
  """
  from threadpoolctl import threadpool_limits
  return threadpool_limits(limits=1, user_api="blas")


def check_layers(layers):
  layers = tuple(layers)
  unknown = [layer for layer in layers if layer not in FEATURE_LAYERS]
  if not layers or unknown:
    raise ValueError(f"--layers: expected some of {', '.join(FEATURE_LAYERS)}, got "
                     f"{', '.join(layers) or 'none'}")
  return tuple(layer for layer in FEATURE_LAYERS if layer in layers)


def _check_options(num_queries, sa_components):
  if num_queries is not None and (isinstance(num_queries, bool) or int(num_queries) != num_queries
                                  or num_queries < 1):
    raise ValueError(f"--num_queries: expected a positive integer, got {num_queries!r}")
  if int(sa_components) != sa_components or sa_components < 1:
    raise ValueError(f"--sa_components: expected a positive integer, got {sa_components!r}")


def _dataset(data_dir, fingerprint, where):
  """(data_dir, manifest) checked against the fingerprint the network was trained with."""
  if not data_dir:
    raise ValueError(f"--data_dir: {where} does not name its dataset; pass --data_dir")
  manifest = manifest_lib.read_manifest(data_dir)
  if fingerprint and manifest_lib.fingerprint(manifest) != fingerprint:
    raise ValueError(f"--data_dir: {data_dir} is not the dataset {where} was trained on (its "
                     "content differs); pass the training dataset with --data_dir")
  return os.path.abspath(data_dir), manifest


def _feature_sets(model, data_dir, modalities, *, split, outputs, features_dir, index,
                  branch=None, batch_size=128, progress=True):
  """{modality: FeatureSet} of `split`, reused from `features_dir` when its index matches."""
  index = {**index, "split": split, "branch": branch}
  cached = embeddings.cached_sets(features_dir, index, modalities, outputs)
  if cached is not None:
    if progress:
      print(f"{split} features: reused from {features_dir}", flush=True)
    return cached
  sets = {}
  for modality in modalities:
    started = time.perf_counter()
    sets[modality] = embeddings.extract(model, data_dir, modality, split=split,
                                          outputs=outputs, branch=branch, batch_size=batch_size)
    if progress:
      print(f"{split} features of {modality.upper()}: {len(sets[modality])} examples in "
            f"{time.perf_counter() - started:.1f} s", flush=True)
  embeddings.save_sets(features_dir, sets)
  embeddings.write_index(features_dir, {**index, "modalities": list(modalities),
                                          "outputs": list(outputs)})
  return sets


def _heldout_labels(manifest):
  return zero_shot.heldout_label_indices(manifest["categories"],
                                         manifest.get("heldout_categories", []))


def _protocol(num_queries, seed):
  return {"split": "val", "similarity": "cosine",
          "average_precision": "non-interpolated (scikit-learn's definition), ties broken "
                               "pessimistically",
          "k": rows_lib.K, "num_queries": num_queries, "seed": seed,
          "chance": rows_lib.CHANCE_DEFINITION}


def _protocol_line(num_queries, seed):
  queries = ("exact, every validation example a query" if num_queries is None
             else f"{num_queries} random queries per pair (seed {seed})")
  return (f"Protocol: cosine similarity on validation features; retrieval {queries}; "
          "non-interpolated AP, ties broken pessimistically; PR@10 = precision at 10; "
          "chance mAP = the expected AP of a random ranking.")


def _write(out_dir, results, title, preamble):
  chance = results["chance"]
  built = tables.build_tables(tables.rows_from_json(results["rows"]), chance,
                              num_classes=results["num_classes"])
  results["tables"] = {t.title: t.to_dict() for t in built}
  fileio.write_json_atomic(os.path.join(out_dir, RESULTS_JSON), results)
  fileio.write_text_atomic(os.path.join(out_dir, TABLES_MD),
                           tables.tables_markdown(title, preamble, built))


def evaluate_run(run_dir, *, layers=FEATURE_LAYERS, num_queries=None, seed=0,
                 subspace_alignment=False, sa_components=SA_COMPONENTS, data_dir=None,
                 batch_size=128, progress=True):
  """Writes RUN/eval/{tables.md, results.json, features/} for a finished run.

  Args:
    run_dir: a run directory of `cmp_tf.train` whose run.json says "complete".
    layers: the layers of Table 3 (fc7 is always evaluated: Tables 1, 2, 5 use it).
    num_queries: None: every validation example is a query; N: N random queries per pair.
    seed: the seed of the random queries and of subspace alignment's PCA/SVM.
    subspace_alignment: also the subspace-alignment rows on this run's fc7 features.
    sa_components: subspace size d (capped by the smallest fitting set).
    data_dir: the dataset; default: the one run.json names (it must be the same content).
    batch_size: examples per forward pass.

  Returns:
    The results dict written to results.json.
  """
  started = time.perf_counter()
  layers = check_layers(layers)
  _check_options(num_queries, sa_components)
  run = finished_run.load_run(run_dir, data_dir=data_dir)
  run_dir, state, spec, data_dir, manifest = (run.run_dir, run.state, run.spec, run.data_dir,
                                              run.manifest)
  manifest_lib.read_manifest(data_dir)  # every shard is there before any feature is computed
  model = run.model
  eval_dir = os.path.join(run_dir, EVAL_DIR)
  digest = run.weights_digest
  index = {"format_version": FORMAT_VERSION, "weights_digest": digest,
           "manifest_fingerprint": state.get("manifest_fingerprint")}
  outputs = tuple(dict.fromkeys(layers + (rows_lib.FC7, embeddings.LOGITS)))
  modalities = [m for m in mod_lib.ALL_MODALITIES if m in spec.modalities]
  val = _feature_sets(model, data_dir, modalities, split="val", outputs=outputs,
                      features_dir=os.path.join(eval_dir, FEATURES_DIR), index=index,
                      batch_size=batch_size, progress=progress)
  train = None
  if subspace_alignment:
    train = _feature_sets(model, data_dir, modalities, split="train", outputs=(rows_lib.FC7,),
                          features_dir=os.path.join(eval_dir, TRAIN_FEATURES_DIR), index=index,
                          batch_size=batch_size, progress=progress)
  features_done = time.perf_counter()

  name = state.get("method_name") or state.get("method")
  is_zero_shot = bool(state.get("zero_shot"))
  heldout = _heldout_labels(manifest)
  rows, details = {}, {}
  with single_threaded_blas():
    retrieval_rows, scores = rows_lib.retrieval_rows(val, layers=layers,
                                                     num_queries=num_queries, seed=seed)
    for table, row in retrieval_rows.items():
      tables.add_row(rows, table, name, row)
    details["retrieval"] = {layer: tables.scores_to_json(s) for layer, s in scores.items()}
    if is_zero_shot:
      zs_rows, zs_scores = rows_lib.zero_shot_rows(val, heldout, num_queries=num_queries,
                                                   seed=seed)
      for table, row in zs_rows.items():
        tables.add_row(rows, table, name, row)
      details["zero_shot_retrieval"] = tables.scores_to_json(zs_scores)
    if subspace_alignment:
      sa_name = SA_FINETUNE_ROW if state.get("method") == "bl_individual" else (
          f"Subsp. Align. + {name}")
      details["subspace_alignment"] = _sa_rows(rows, sa_name, val, train, heldout,
                                               is_zero_shot, sa_components, num_queries, seed)
  metrics_done = time.perf_counter()

  results = {
      "format_version": FORMAT_VERSION, "kind": "run", "run_dir": run_dir,
      "method": state.get("method"), "method_name": name, "zero_shot": is_zero_shot,
      "data_dir": data_dir, "manifest_fingerprint": state.get("manifest_fingerprint"),
      "weights_digest": digest, "layers": list(layers), "protocol": _protocol(num_queries, seed),
      "subspace_alignment": ({"components": sa_components} if subspace_alignment else None),
      "num_classes": len(manifest["categories"]),
      "heldout_categories": list(manifest.get("heldout_categories", [])),
      "val_counts": {m: len(s) for m, s in val.items()},
      "chance": rows_lib.chance_levels(val, num_classes=len(manifest["categories"]),
                                       heldout_labels=heldout if is_zero_shot else None),
      "rows": tables.rows_to_json(rows), "details": details,
      "training": finished_run.training_summary(state),
      "wall_time_s": {"features": round(features_done - started, 2),
                      "metrics": round(metrics_done - features_done, 2)},
  }
  results["wall_time_s"]["total"] = round(time.perf_counter() - started, 2)
  preamble = [
      f"Run: {name}{' (zero-shot)' if is_zero_shot else ''}, {run_dir}",
      *_training_lines(results["training"]),
      f"Data: {data_dir} ({len(manifest['categories'])} categories, "
      f"{len(results['heldout_categories'])} held out for zero-shot); validation examples: "
      + ", ".join(f"{m.upper()} {n}" for m, n in results["val_counts"].items()) + ".",
      _protocol_line(num_queries, seed),
      f"Features: {os.path.join(eval_dir, FEATURES_DIR)}/<layer>/<modality>.npz. "
      f"Evaluated in {results['wall_time_s']['total']:.1f} s.",
  ]
  _write(eval_dir, results, f"Evaluation of {name}", preamble)
  page_path = page.write_run_page(eval_dir, results, state, val, data_dir, manifest)
  if progress:
    print(f"evaluation written to {eval_dir} ({results['wall_time_s']['total']:.1f} s); "
          f"its page: {page_path}", flush=True)
  return results


def _training_lines(summary):
  """One line per stage: steps, stop reason, best dev accuracy, upper-layer drift."""
  lines = []
  for i, stage in enumerate(summary):
    best = f", best at step {stage['best_step']}" if stage.get("best_step") else ""
    dev = f"; dev accuracy {stage['dev_mean']:.3f}" if stage.get("dev_mean") is not None else ""
    drift = "; ".join(f"drift from {origin.replace('from_', '').replace('_', ' ')}: "
                      + ", ".join(f"{k} {v:.3f}" for k, v in by_kind.items())
                      for origin, by_kind in stage["drift"].items() if by_kind)
    lines.append(f"Stage {i} ({stage['name']}): {stage['steps']} steps "
                 f"({stage.get('stop_reason') or 'fixed'}{best}){dev}"
                 + (f"; {drift}" if drift else "") + ".")
  return lines


def _sa_rows(rows, name, val, train, heldout, is_zero_shot, sa_components, num_queries, seed):
  """Adds the subspace-alignment rows named `name`; returns their details."""
  if is_zero_shot:
    sa, scores, used = rows_lib.sa_zero_shot_rows(val, train, heldout,
                                                  n_components=sa_components,
                                                  num_queries=num_queries, seed=seed)
  else:
    sa, scores, used = rows_lib.sa_retrieval_rows(val, train, n_components=sa_components,
                                                  num_queries=num_queries, seed=seed)
  for table, row in sa.items():
    tables.add_row(rows, table, name, row)
  return {"row": name, "scores": tables.scores_to_json(scores),
          "components": {tables.column_key(k): d for k, d in used.items()}}


def resolve_source_dir(path):
  """(source directory, run.json or None) of a source directory or of a run naming one."""
  path = os.path.abspath(os.fspath(path))
  run_json = os.path.join(path, "run.json")
  if os.path.isfile(run_json):
    state = fileio.read_json(run_json)
    directory = (state.get("source") or {}).get("directory")
    if not directory:
      raise finished_run.RunError(f"--source_dir: the run in {path} did not start from a source "
                             "network (its run.json names none)")
    return os.path.abspath(directory), state
  return path, None


def evaluate_source(source_dir, *, data_dir=None, out_dir=None, num_queries=None, seed=0,
                    sa_components=SA_COMPONENTS, batch_size=128, progress=True):
  """Writes the source network's rows (BL-PlacesNet, Subsp. Align. + PlacesNet).

  Args:
    source_dir: a cached source network (`<cache>/source/<key>`, holding source.json and
      source.weights.h5), or a run directory whose run.json names one.
    data_dir: the dataset; default: the run's, when `source_dir` is a run.
    out_dir: where to write; default: <source directory>/eval.
    Others: as in `evaluate_run`.

  Returns:
    The results dict written to results.json.
  """
  started = time.perf_counter()
  directory, state = resolve_source_dir(source_dir)
  _check_options(num_queries, sa_components)
  info_path = os.path.join(directory, "source.json")
  weights = os.path.join(directory, "source.weights.h5")
  for path in (info_path, weights):
    if not os.path.isfile(path):
      raise finished_run.RunError(f"--source_dir: {directory} is not a cached source network (no "
                             f"{os.path.basename(path)})")
  info = fileio.read_json(info_path)
  data_dir, manifest = _dataset(data_dir or (state or {}).get("data_dir"),
                                info.get("manifest_fingerprint"),
                                f"the source network in {directory}")
  from cmp_tf.models import spec as spec_lib
  model = finished_run.build_and_load(spec_lib.CrossModalSpec.from_config(info["spec"]), weights)
  out_dir = os.path.abspath(out_dir or os.path.join(directory, EVAL_DIR))
  digest = file_digest(weights)
  index = {"format_version": FORMAT_VERSION, "weights_digest": digest,
           "manifest_fingerprint": info.get("manifest_fingerprint")}
  visual = [m for m in mod_lib.IMAGE_MODALITIES if m in manifest["modalities"]]
  val = _feature_sets(model, data_dir, visual, split="val",
                      outputs=(rows_lib.FC7, embeddings.LOGITS),
                      features_dir=os.path.join(out_dir, FEATURES_DIR), index=index,
                      branch=mod_lib.NAT, batch_size=batch_size, progress=progress)
  train = _feature_sets(model, data_dir, visual, split="train", outputs=(rows_lib.FC7,),
                        features_dir=os.path.join(out_dir, TRAIN_FEATURES_DIR), index=index,
                        branch=mod_lib.NAT, batch_size=batch_size, progress=progress)
  features_done = time.perf_counter()

  heldout = _heldout_labels(manifest)
  rows, details = {}, {}
  with single_threaded_blas():
    details["subspace_alignment"] = _sa_rows(rows, SA_PLACESNET_ROW, val, train, heldout,
                                             False, sa_components, num_queries, seed)
    if heldout.size:
      for table, row in rows_lib.source_zero_shot_rows(val, heldout).items():
        tables.add_row(rows, table, SOURCE_ROW, row)
      details["subspace_alignment_zero_shot"] = _sa_rows(rows, SA_PLACESNET_ROW, val, train,
                                                         heldout, True, sa_components,
                                                         num_queries, seed)
  metrics_done = time.perf_counter()
  num_classes = len(manifest["categories"])
  results = {
      "format_version": FORMAT_VERSION, "kind": "source", "source_dir": directory,
      "data_dir": data_dir, "manifest_fingerprint": info.get("manifest_fingerprint"),
      "weights_digest": digest, "layers": [rows_lib.FC7],
      "protocol": _protocol(num_queries, seed),
      "subspace_alignment": {"components": sa_components}, "num_classes": num_classes,
      "heldout_categories": list(manifest.get("heldout_categories", [])),
      "val_counts": {m: len(s) for m, s in val.items()},
      "chance": rows_lib.chance_levels(val, num_classes=num_classes,
                                       heldout_labels=heldout if heldout.size else None),
      "rows": tables.rows_to_json(rows), "details": details,
      "wall_time_s": {"features": round(features_done - started, 2),
                      "metrics": round(metrics_done - features_done, 2)},
  }
  results["wall_time_s"]["total"] = round(time.perf_counter() - started, 2)
  preamble = [
      f"Source network (PlacesNet stand-in): {directory}, its NAT branch applied to every "
      "visual modality.",
      f"Data: {data_dir} ({num_classes} categories, {len(results['heldout_categories'])} held "
      "out for zero-shot).",
      _protocol_line(num_queries, seed),
      f"Subspace alignment: d = {sa_components} (capped by the smallest fitting set), "
      "subspaces fitted on the training sets (zero-shot rows: without the held-out "
      "categories outside NAT).",
  ]
  _write(out_dir, results, "Evaluation of the source network", preamble)
  if progress:
    print(f"source evaluation written to {out_dir} ({results['wall_time_s']['total']:.1f} s)",
          flush=True)
  return results
