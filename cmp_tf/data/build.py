"""Builds a dataset directory: sharded TFRecords per modality and split, then manifest.json.

  python -m cmp_tf.build_data --flagfile=configs/data_default.flags --data_dir=DIR [--seed=S]

`build_dataset` checks everything first (`BuildConfig.validated`, then the plan: paths,
category names, every CMPlaces label file and the files it lists); only then are records
rendered or decoded. The shards are written into a staging directory inside DIR and moved
into place when every modality succeeded; manifest.json is written last, so a directory
without one is an incomplete build, and a failed build leaves nothing behind. The same
seed gives byte-identical TFRecords, whatever the number of workers.
"""

import dataclasses
import itertools
import multiprocessing
import os
import shutil
import time

import numpy as np

from cmp_tf import fileio
from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.data import plan as plan_lib
from cmp_tf.errors import DataError

_STAGING_PREFIX = ".staging-"
_ENCODE_CHUNK = 256  # descriptions embedded per call (fixed: part of the determinism)
_SIZE_PROBE = 16  # records serialised up front to choose the shard count
_RENDER_CHUNK = 8


def ensure_dataset(data_dir, config, *, origin, progress=True):
  """The manifest of the cached dataset `data_dir`, (re)built from `config` (a BuildConfig
  read from `origin`, named in messages) when it is missing or was built with other
  settings (e.g. by a version without a dev split)."""
  config = config.validated()
  if os.path.isfile(manifest_lib.manifest_path(data_dir)):
    manifest = manifest_lib.read_manifest(data_dir)
    if manifest.get("build", {}).get("config") == _config_json(config):
      return manifest
    print(f"The dataset in {data_dir} was built with other settings than {origin}; "
          "rebuilding it.", flush=True)
    config = dataclasses.replace(config, overwrite=True)
  else:
    print(f"No dataset in {data_dir}; building it from {origin}.", flush=True)
  return build_dataset(data_dir, config, progress=progress)


def build_dataset(data_dir, config, *, progress=True, argv=None):
  """Builds the dataset `config` (a BuildConfig) into `data_dir`.

  Returns the manifest. Raises ValueError (naming the flag) or DataError (naming
  the file and line) before any expensive work when something is wrong.
  """
  start = time.time()
  config = config.validated()
  data_dir = _check_data_dir(data_dir, config.overwrite)
  plan = plan_lib.make_plan(config)
  os.makedirs(data_dir, exist_ok=True)
  say = print if progress else (lambda *a, **k: None)
  say(f"{len(plan.categories)} categories, {len(plan.heldout)} held out for zero-shot "
      f"({plan.heldout_rule}).")

  staging = os.path.join(data_dir, f"{_STAGING_PREFIX}{os.getpid()}")
  _remove_dead_staging(data_dir)
  pool = None
  try:
    os.makedirs(staging)
    if config.source == "synthcmp" and config.workers > 1:
      pool = _start_pool(plan.grammar, min(config.workers, os.cpu_count() or 1))
    splits, skipped, seconds = _write_all(plan, staging, pool, progress)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  finally:
    if pool is not None:
      pool.terminate()
      pool.join()
  _commit(data_dir, staging, config.modalities)

  encoder_name = plan.encoder.name if plan.encoder is not None else config.sentence_encoder
  wall = time.time() - start
  manifest = {
      "format_version": manifest_lib.FORMAT_VERSION,
      "source": config.source,
      "categories": list(plan.categories),
      "heldout_categories": list(plan.heldout),
      "heldout_rule": plan.heldout_rule,
      "seed": int(config.seed),
      "image_size": int(config.image_size),
      "sentence_encoder": {"name": encoder_name, "dim": int(plan.vector_dim)},
      "vector_dim": int(plan.vector_dim),
      "modalities": splits,
      "dev_split": plan_lib.dev_split_json(config),
      "skipped": skipped,
      "build": {"wall_time_s": round(wall, 2),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "split_seconds": seconds,
                "argv": list(argv) if argv is not None else [],
                "config": _config_json(config),
                **({"cmplaces": _cmplaces_json(plan)} if config.source == "cmplaces" else {})},
  }
  manifest_lib.write_manifest(data_dir, manifest)
  say(f"Built {data_dir} in {wall:.1f} s (train+dev+val): " + ", ".join(
      f"{m} {s['train']['count']}+{s.get('dev', {}).get('count', 0)}+{s['val']['count']}"
      for m, s in splits.items()))
  if config.report:
    from cmp_tf.data import difficulty  # scikit-learn only when asked for
    result = difficulty.difficulty_report(data_dir, seed=config.seed)
    difficulty.write_report(data_dir, result)
    say(difficulty.format_report(result))
  return manifest



def _config_json(config):
  out = dataclasses.asdict(config)
  out["categories"] = list(config.categories)
  out["modalities"] = list(config.modalities)
  out.pop("overwrite")  # how it was written, not what was built
  if config.source == "synthcmp":
    from cmp_tf.data import synthcmp
    out["generator_version"] = synthcmp.GENERATOR_VERSION  # a newer generator rebuilds caches
  return out


def _cmplaces_json(plan):
  """Where a CMPlaces build read from: the roots and every label file used."""
  config = plan.config
  return {"root": os.path.abspath(config.cmplaces_root),
          "files_root": os.path.abspath(config.cmplaces_files_root)
                        if config.cmplaces_files_root else None,
          "places205_root": os.path.abspath(config.places205_root)
                            if config.places205_root else None,
          "label_files": {f"{m}/{split}": scan.label_file
                          for (m, split), scan in sorted(plan.scans.items())}}



def _check_data_dir(data_dir, overwrite):
  if not data_dir:
    raise ValueError("--data_dir: required (the directory to build the dataset in)")
  data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
  if os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise ValueError(f"--data_dir: {data_dir} exists and is not a directory")
  if os.path.isfile(manifest_lib.manifest_path(data_dir)) and not overwrite:
    raise ValueError(f"--data_dir: {data_dir} already holds a dataset (manifest.json); "
                     "pass --overwrite to replace it")
  return data_dir



# --- Rendering and writing ---------------------------------------------------------------

_WORKER_GRAMMAR = None


def _init_worker(grammar):
  global _WORKER_GRAMMAR
  _WORKER_GRAMMAR = grammar


def _render_task(task):
  from cmp_tf.data import synthcmp
  return synthcmp.render_record(_WORKER_GRAMMAR, *task)


def _start_pool(grammar, workers):
  """Render workers, forked before TensorFlow starts its threads here (fork where available)."""
  methods = multiprocessing.get_all_start_methods()
  context = multiprocessing.get_context("fork" if "fork" in methods else None)
  return context.Pool(workers, initializer=_init_worker, initargs=(grammar,))



def _records(plan, modality, split, items, pool, skipped):
  """ExampleRecords of `items` (dev items are training examples: rendered or read as such)."""
  if plan.config.source == "synthcmp":
    if pool is None:
      _init_worker(plan.grammar)
      return map(_render_task, items)
    return pool.imap(_render_task, items, chunksize=_RENDER_CHUNK)
  from cmp_tf.data import cmplaces
  source_split = "val" if split == "val" else "train"
  scan = plan.scans[modality, source_split]
  # The scan's skipped lines are counted once, with train.
  scan = dataclasses.replace(scan, entries=list(items),
                             skipped=scan.skipped if split != "dev" else {})
  new_label = {plan.all_categories.index(c): i for i, c in enumerate(plan.categories)}
  records = cmplaces.iter_records(plan.config.cmplaces_root, modality, source_split,
                                  plan.all_categories, plan.config.image_size,
                                  skip_bad=plan.config.skip_bad, skipped=skipped,
                                  scan_result=scan)

  def relabelled():
    for record in records:
      record.label = new_label[record.label]
      yield record

  return relabelled()


def _with_vectors(records, encoder):
  """Embeds DSC descriptions in fixed chunks (the chunking is part of the determinism)."""
  from cmp_tf.text import encoders
  while True:
    chunk = list(itertools.islice(records, _ENCODE_CHUNK))
    if not chunk:
      return
    vectors = encoders.encode_descriptions(encoder, [r.text for r in chunk],
                                               where=[r.example_id for r in chunk])
    for record, vector in zip(chunk, vectors):
      record.vector = vector
      yield record


def _write_all(plan, staging, pool, progress):
  """Writes every modality and split under `staging`: (manifest splits, skipped, seconds)."""
  from tqdm import tqdm

  from cmp_tf.data import tfrecord_io
  config = plan.config
  splits, skipped, seconds = {}, {}, {}
  for modality in config.modalities:
    splits[modality] = {}
    for split, items in plan_lib.split_items(plan, modality).items():
      split_skipped = {}
      start = time.time()
      total = len(items)
      records = _records(plan, modality, split, items, pool, split_skipped)
      if modality == mod_lib.DSC:
        records = _with_vectors(records, plan.encoder)
      records = tqdm(records, total=total, desc=f"{modality}/{split}", unit="ex",
                     disable=not progress, leave=False, mininterval=1.0)
      label_counts, example_ids = [0] * len(plan.categories), [] if split == "dev" else None
      counted = _counting(records, label_counts, example_ids)
      probe = list(itertools.islice(counted, _SIZE_PROBE))
      if probe:
        size = np.mean([len(tfrecord_io.serialize(r, plan.vector_dim)) for r in probe])
      else:
        size = 1
      num_shards = tfrecord_io.choose_num_shards(total, size)
      names, count = tfrecord_io.write_sharded(
          itertools.chain(probe, counted), os.path.join(staging, modality), split, num_shards,
          plan.vector_dim)
      if count == 0:
        raise DataError(f"no {modality}/{split} examples left to write (all skipped: "
                        f"{split_skipped})")
      splits[modality][split] = {
          "count": count, "shards": [f"{modality}/{n}" for n in names],
          "shard_bytes": [os.path.getsize(os.path.join(staging, modality, n)) for n in names],
          "shard_digests": [fileio.file_digest(os.path.join(staging, modality, n))
                            for n in names],
          "label_counts": label_counts}
      if split == "dev":
        splits[modality][split]["example_ids"] = example_ids
      if config.source == "cmplaces":
        skipped[f"{modality}/{split}"] = split_skipped
      seconds[f"{modality}/{split}"] = round(time.time() - start, 2)
  return splits, skipped, seconds


def _counting(records, label_counts, example_ids):
  for record in records:
    label_counts[record.label] += 1
    if example_ids is not None:
      example_ids.append(record.example_id)
    yield record


def _commit(data_dir, staging, modalities):
  """Moves the staged modality directories into `data_dir`, replacing an older build."""
  for name in (manifest_lib.MANIFEST_NAME, "difficulty.json"):
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
      os.remove(path)  # the directory is an incomplete build until the new manifest lands
  for modality in mod_lib.ALL_MODALITIES:
    target = os.path.join(data_dir, modality)
    if modality in modalities:
      fileio.replace_directory(os.path.join(staging, modality), target)
    elif os.path.isdir(target):
      shutil.rmtree(target)
  os.rmdir(staging)


def _remove_dead_staging(data_dir):
  """Removes staging directories of builds that were killed (their process is gone)."""
  for name in os.listdir(data_dir):
    if not name.startswith(_STAGING_PREFIX):
      continue
    try:
      pid = int(name[len(_STAGING_PREFIX):])
      os.kill(pid, 0)
      alive = pid != os.getpid()
    except (ValueError, ProcessLookupError):
      alive = False
    except PermissionError:
      alive = True
    if not alive:
      shutil.rmtree(os.path.join(data_dir, name), ignore_errors=True)
