"""manifest.json: what a dataset directory holds, written last by the build.

A dataset directory without a manifest is an incomplete build. The format:

  {"format_version": 1, "source": "synthcmp" | "cmplaces" | "folders",
   "categories": [names in label order], "heldout_categories": [subset],
   "seed": int, "image_size": int, "sentence_encoder": {"name": str, "dim": int},
   "vector_dim": int,
   "modalities": {"nat": {"train": {"count": int, "shards": ["nat/train-00000-of-00004.tfrecord"],
                                    "shard_bytes": [int per shard],
                                    "label_counts": [int per category]},
                    "dev": {..., "example_ids": [...]}, "val": {...}}, ...},
   "dev_split": {"per_category": int, "carved_from": "train", "rule": str},
   "skipped": {"<modality>/<split>": {"<reason>": count}},
   "build": {"wall_time_s": float, "created": iso time, "argv": [...]}}

The dev split (optional: absent in datasets built with --dev_per_category=0) is carved
out of the training set, disjoint from train and val; model selection reads it and
never val. Shard paths are relative to the dataset directory; labels index "categories".
"shard_bytes" and "label_counts" are optional: with them a truncated shard is
caught when the manifest is read, and counts without some categories are exact.
"""

import hashlib
import json
import os

from cmp_tf import fileio
from cmp_tf import modalities as mod_lib
from cmp_tf.errors import DataError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
SOURCES = ("synthcmp", "cmplaces", "folders")
BUILD_COMMAND = ("python -m cmp_tf.build_data --flagfile=configs/data_default.flags "
                 "--data_dir={data_dir}")


def fingerprint(manifest):
  """Digest of what a dataset holds (everything but the build's time and argv)."""
  content = {k: v for k, v in manifest.items() if k != "build"}
  return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def manifest_path(data_dir):
  return os.path.join(os.fspath(data_dir), MANIFEST_NAME)


def write_manifest(data_dir, manifest):
  """Validates `manifest` and writes it atomically as DIR/manifest.json."""
  validate(manifest, where="write_manifest", data_dir=None)
  fileio.write_json_atomic(manifest_path(data_dir), manifest)


def read_manifest(data_dir, check_files=True):
  """Reads and validates DIR/manifest.json; errors say how to build a missing dataset."""
  data_dir = os.fspath(data_dir)
  build_hint = "build it with: " + BUILD_COMMAND.format(data_dir=data_dir)
  if not os.path.isdir(data_dir):
    raise DataError(f"dataset directory does not exist; {build_hint}", path=data_dir)
  path = manifest_path(data_dir)
  if not os.path.isfile(path):
    state = "is empty" if not os.listdir(data_dir) else "has no manifest (an incomplete build)"
    raise DataError(f"dataset directory {state}; {build_hint}", path=data_dir)
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    manifest = json.loads(text)
  except json.JSONDecodeError as e:
    raise DataError(f"not valid JSON ({e.msg}); {build_hint} --overwrite", path=path,
                    line=e.lineno) from None
  validate(manifest, where=path, data_dir=data_dir if check_files else None)
  return manifest


def _fail(where, message):
  raise DataError(message, path=where)


def validate(manifest, where, data_dir=None):
  """Checks the manifest's structure; with `data_dir`, also that every shard exists."""
  if not isinstance(manifest, dict):
    _fail(where, "manifest must be a JSON object")
  for key in ("format_version", "source", "categories", "heldout_categories", "seed",
              "image_size", "sentence_encoder", "vector_dim", "modalities"):
    if key not in manifest:
      _fail(where, f"manifest has no {key!r}")
  if manifest["format_version"] != FORMAT_VERSION:
    _fail(where, f"format_version {manifest['format_version']!r} is not supported "
          f"(expected {FORMAT_VERSION}); rebuild the dataset")
  if manifest["source"] not in SOURCES:
    _fail(where, f"unknown source {manifest['source']!r}; expected one of {SOURCES}")
  categories = manifest["categories"]
  if (not isinstance(categories, list) or not categories
      or not all(isinstance(c, str) and c for c in categories)):
    _fail(where, "'categories' must be a non-empty list of names")
  if len(set(categories)) != len(categories):
    dup = sorted({c for c in categories if categories.count(c) > 1})
    _fail(where, f"'categories' lists {dup} more than once")
  unknown = [c for c in manifest["heldout_categories"] if c not in categories]
  if unknown:
    _fail(where, f"'heldout_categories' names {unknown}, which are not in 'categories'")
  for key in ("seed", "image_size", "vector_dim"):
    if not isinstance(manifest[key], int) or isinstance(manifest[key], bool):
      _fail(where, f"{key!r} must be an integer")
  encoder = manifest["sentence_encoder"]
  if not isinstance(encoder, dict) or "name" not in encoder or "dim" not in encoder:
    _fail(where, "'sentence_encoder' must be {\"name\": ..., \"dim\": ...}")
  mods = manifest["modalities"]
  if not isinstance(mods, dict) or not mods:
    _fail(where, "'modalities' must be a non-empty object")
  for modality, splits in mods.items():
    if modality not in mod_lib.ALL_MODALITIES:
      _fail(where, f"unknown modality {modality!r} in 'modalities'")
    for split, entry in splits.items():
      if split not in mod_lib.SPLITS:
        _fail(where, f"unknown split {split!r} of {modality!r}")
      _validate_split(where, f"{modality}/{split}", entry, len(categories), data_dir)


def _validate_split(where, name, entry, num_categories, data_dir):
  if not isinstance(entry, dict) or "count" not in entry or "shards" not in entry:
    _fail(where, f"{name} needs 'count' and 'shards'")
  if not isinstance(entry["count"], int) or entry["count"] < 0:
    _fail(where, f"{name}: 'count' must be a non-negative integer")
  if not isinstance(entry["shards"], list) or not entry["shards"]:
    _fail(where, f"{name}: 'shards' must be a non-empty list")
  counts = entry.get("label_counts")
  if counts is not None:
    if len(counts) != num_categories or sum(counts) != entry["count"]:
      _fail(where, f"{name}: 'label_counts' must have one count per category summing to "
            f"'count' ({entry['count']})")
  for key in ("shard_bytes", "shard_digests"):
    values = entry.get(key)
    if values is not None and len(values) != len(entry["shards"]):
      _fail(where, f"{name}: '{key}' must have one entry per shard")
  sizes = entry.get("shard_bytes")
  for i, shard in enumerate(entry["shards"]):
    if os.path.isabs(shard) or ".." in shard.split("/"):
      _fail(where, f"{name}: shard path {shard!r} must be relative to the dataset directory")
    if data_dir is None:
      continue
    path = os.path.join(data_dir, shard)
    if not os.path.isfile(path):
      raise DataError(f"shard listed in {MANIFEST_NAME} for {name} is missing; rebuild the "
                      "dataset", path=path)
    if sizes is not None and os.path.getsize(path) != sizes[i]:
      raise DataError(f"shard has {os.path.getsize(path)} bytes but was written with "
                      f"{sizes[i]} (truncated or modified); rebuild the dataset", path=path)


def verify_shards(manifest, data_dir, modalities, splits=None):
  """Checks the content of every shard of `modalities` against the manifest's checksum
  (the first 16 hex digits of its sha256; `read_manifest` checks presence and size), so
  a damaged file is named before training rather than met as a TensorFlow error later.
  Datasets built before checksums are not checked."""
  for modality in modalities:
    built = manifest["modalities"].get(mod_lib.parse_modality(modality), {})
    for split in splits or [s for s in mod_lib.SPLITS if s in built or s != "dev"]:
      entry = split_entry(manifest, modality, split)
      digests = entry.get("shard_digests") or [None] * len(entry["shards"])
      for shard, digest in zip(entry["shards"], digests):
        path = os.path.join(os.fspath(data_dir), shard)
        if digest is not None and fileio.file_digest(path) != digest:
          raise DataError(f"shard content differs from its checksum in {MANIFEST_NAME} "
                          "(damaged after the build); rebuild the dataset", path=path)


def has_dev_split(manifest, modalities):
  """Whether every one of `modalities` has a dev split."""
  return all("dev" in manifest["modalities"].get(m, {}) for m in modalities)


def label_names(manifest):
  """Category names in label order."""
  return list(manifest["categories"])


def split_entry(manifest, modality, split):
  """The manifest entry of one modality and split; a clear error if it was not built."""
  modality = mod_lib.parse_modality(modality)
  if split not in mod_lib.SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {mod_lib.SPLITS}")
  mods = manifest["modalities"]
  if modality not in mods:
    raise DataError(f"dataset has no modality {modality!r} (built: {', '.join(mods)})")
  if split not in mods[modality]:
    hint = ("; rebuild it with --dev_per_category > 0 (python -m cmp_tf.build_data)"
            if split == "dev" else "")
    raise DataError(f"dataset has no {split!r} split for {modality!r}{hint}")
  return mods[modality][split]


def shard_paths(manifest, data_dir, modality, split):
  """Absolute paths of the shards of one modality and split, in manifest order."""
  entry = split_entry(manifest, modality, split)
  return [os.path.join(os.path.abspath(os.fspath(data_dir)), s) for s in entry["shards"]]


def label_ids(manifest, names, where="exclude_categories"):
  """Label indices of category `names`; an unknown name is an error naming `where`."""
  categories = manifest["categories"]
  unknown = [n for n in names if n not in categories]
  if unknown:
    raise ValueError(f"{where}: unknown categories {unknown}; the dataset has "
                     f"{len(categories)} categories, e.g. {categories[:5]}")
  return sorted(categories.index(n) for n in names)
