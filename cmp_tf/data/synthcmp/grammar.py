"""The SynthCMP scene grammar: loading, validation and the compiled in-memory form.

The grammar lives in a readable JSON file (`data/scene_grammar.json`). Loading it checks
every entry and compiles the object shapes into polygons once, so that sampling and
rendering a scene only do arithmetic. A bad grammar raises `DataError` naming the file
and the entry.
"""

import dataclasses
import json
import math
import re
from typing import Dict, FrozenSet, Optional, Tuple

import numpy as np

from cmp_tf import paths
from cmp_tf.data.synthcmp import places205 as places205_lib
from cmp_tf.errors import DataError

GRAMMAR_FILE = "scene_grammar.json"
STORIES_FILE = "scene_stories.json"
PLACES205_FILE = "places205_categories.txt"

ANCHORS = ("bottom", "top", "center", "horizon", "ground")
KINDS = ("indoor", "outdoor")
TEXTURES = ("smooth", "gradient", "noise", "blotch", "planks", "tiles", "waves", "bricks")
COLOR_ROLES = ("main", "dark", "light")
# What a description says besides objects (scene_stories.json): verb phrases (purpose,
# activities), noun phrases (people, sounds), adjective phrases (feelings), adverbials (times),
# and weather.
STORY_FIELDS = ("purpose", "activities", "people", "sounds", "feelings", "times", "weather")
ELLIPSE_POINTS = 20
DOME_POINTS = 12


@dataclasses.dataclass(frozen=True, eq=False)
class Part:
  """One filled polygon of an object, in unit object coordinates (y, x), y down."""
  points: np.ndarray  # (K, 2) float32
  color: str  # "main", "dark", "light" or a palette name
  colors: Tuple[str, ...] = ()  # grid cells: one drawn at random per cell


@dataclasses.dataclass(frozen=True)
class Prior:
  """Where an object goes and how big it is; ranges are sampled uniformly."""
  anchor: str
  y: Tuple[float, float]
  x: Tuple[float, float]
  h: Tuple[float, float]
  aspect: Tuple[float, float]  # width / height, in image fractions of a square image


@dataclasses.dataclass(frozen=True, eq=False)
class ObjectType:
  name: str
  synonyms: Tuple[str, ...]
  colors: Tuple[str, ...]
  texture: str
  parts: Tuple[Part, ...]
  prior: Optional[Prior]
  layer: float
  on: Tuple[str, ...]
  perspective: bool
  stuff: bool
  points: np.ndarray  # all parts' points concatenated, (sum K, 2), for one transform per instance
  part_sizes: Tuple[int, ...]
  color_after: str = ""  # descriptions say "a man in red" rather than "a red man"


@dataclasses.dataclass(frozen=True)
class Layer:
  """A background band; `bottom` is None for the last band (it reaches the image bottom)."""
  object: str
  bottom: Optional[Tuple[float, float]]
  p: float
  wobble: float
  colors: Optional[Tuple[str, ...]]
  texture: Optional[str]


@dataclasses.dataclass(frozen=True)
class Entry:
  """An object of a category: presence probability, count and the effective prior."""
  object: str
  p: float
  count: Tuple[int, int]
  prior: Prior
  colors: Tuple[str, ...]
  on: Tuple[str, ...]
  within: Tuple[str, ...]
  layer: float


@dataclasses.dataclass(frozen=True)
class Story:
  """Phrases per story field: the category's own, and those it shares with its settings and kind.

  Shared phrases make categories of one setting (home, road, water ...) read alike, as
  CMPlaces' descriptions of related scenes do; a phrase naming the category is left out.
  """
  own: Dict[str, Tuple[str, ...]]
  shared: Dict[str, Tuple[str, ...]]

  def fields(self):
    return [f for f in STORY_FIELDS if self.own.get(f) or self.shared.get(f)]


@dataclasses.dataclass(frozen=True, eq=False)
class Category:
  name: str
  places205: int
  kind: str
  synonyms: Tuple[str, ...]
  layers: Tuple[Layer, ...]
  horizon_layer: int
  entries: Tuple[Entry, ...]  # supports first, then objects placed on or within them
  banned: "re.Pattern"  # words that name the category; descriptions never contain them
  story: Story = Story({}, {})


@dataclasses.dataclass(frozen=True, eq=False)
class Grammar:
  """A validated scene grammar; `category_names` order is the default category set."""
  path: str
  palette: Dict[str, Tuple[int, int, int]]
  objects: Dict[str, ObjectType]
  categories: Dict[str, Category]
  distractors: Tuple[str, ...]
  irregular_plurals: Dict[str, str]
  mass_nouns: FrozenSet[str]
  places205: Dict[str, int]

  @property
  def category_names(self):
    return list(self.categories)

  @property
  def object_names(self):
    return list(self.objects)

  def places205_index(self, name):
    if name not in self.places205:
      raise KeyError(f"{name!r} is not a Places205 category")
    return self.places205[name]

  def category(self, name):
    if name not in self.categories:
      raise KeyError(
          f"unknown SynthCMP category {name!r}; the grammar {self.path} defines: "
          f"{', '.join(self.categories)}")
    return self.categories[name]


def load_places205(path=None):
  """Places205 names -> index, from lines like `/k/kitchen 108` (name = path after the letter)."""
  path = path or paths.shipped(PLACES205_FILE)
  names = {}
  with open(path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
      line = line.strip()
      if not line or line.startswith("#"):
        continue
      fields = line.split()
      if len(fields) != 2 or not fields[1].isdigit():
        raise DataError(f"expected '/x/name index', got {line!r}", path=path, line=line_no)
      name = re.sub(r"^/[a-z]/", "", fields[0])
      if name in names:
        raise DataError(f"category {name!r} is listed twice", path=path, line=line_no)
      names[name] = int(fields[1])
  return names


def banned_pattern(phrases):
  """Regex matching any phrase (or its plural) as whole words, case-insensitively."""
  alternatives = sorted({p.lower() for p in phrases}, key=len, reverse=True)
  body = "|".join(re.escape(p).replace(r"\ ", r"[\s_-]+") for p in alternatives)
  return re.compile(rf"(?<![\w-])(?:{body})(?:s|es)?(?![\w-])", re.IGNORECASE)


def load_grammar(path=None, stories_path=None, places205=False, scenes_path=None):
  """Loads and validates a scene grammar and its stories (default: the shipped ones).

  With `places205`, the grammar also holds the procedural categories of `scenes_path`
  (default: the shipped places205_scenes.json), and its categories are all 205, in
  Places205 index order.
  """
  path = str(path or paths.shipped(GRAMMAR_FILE))
  raw = _read_json(path)
  grammar = _Compiler(path, raw, load_places205()).compile()
  stories_path = str(stories_path or paths.shipped(STORIES_FILE))
  stories = _read_json(stories_path)
  if places205:
    scenes_path = str(scenes_path or paths.shipped(places205_lib.SCENES_FILE))
    grammar, stories = _with_places205(grammar, stories, scenes_path)
  return attach_stories(grammar, stories_path, stories)


def _with_places205(grammar, stories, path):
  """(grammar with every Places205 category, stories with the procedural ones' entries)."""
  def fail(where, message):
    raise DataError(f"{where}: {message}", path=path)

  raw = _read_json(path)
  if not isinstance(raw, dict) or not isinstance(raw.get("categories"), dict):
    fail("top level", "expected an object with 'categories'")
  scenes = _Compiler(path, raw, grammar.places205)
  scenes.objects, scenes.palette = grammar.objects, grammar.palette
  categories = dict(grammar.categories)
  stories = dict(stories, categories=dict(stories.get("categories", {})))
  for name, entry in raw["categories"].items():
    where = f"category {name!r}"
    if name not in grammar.places205:
      fail(where, f"{name!r} is not a Places205 category (see {PLACES205_FILE})")
    if name in categories:
      fail(where, f"{name!r} is written by hand in {GRAMMAR_FILE}; remove it here")
    scenes.keys(entry, where, required=("bands", "objects", "activities"),
                optional=places205_lib.ENTRY_KEYS)
    bands = scenes.words(entry["bands"], f"{where}.bands")
    if not 1 <= len(bands) <= 3:
      fail(f"{where}.bands", f"expected 1 to 3 bands, got {len(bands)}")
    for obj in scenes.words(entry["objects"], f"{where}.objects"):
      if scenes.known_object(obj, f"{where}.objects").prior is None:
        fail(f"{where}.objects", f"{obj!r} only fills bands; list it under bands")
    kind = "outdoor" if bands[0] == "sky" or "water" in bands[:1] else "indoor"
    category = scenes.compile_category(places205_lib.raw_category(
        name, entry, grammar.places205[name], kind, grammar.objects), 0)
    for phrase in scenes.words(entry["activities"], f"{where}.activities"):
      if category.banned.search(phrase):
        fail(f"{where}.activities", f"phrase {phrase!r} names the category")
    categories[name] = category
    stories["categories"][name] = places205_lib.story_entry(entry)
  missing = [n for n in grammar.places205 if n not in categories]
  if missing:
    fail("categories", f"{len(missing)} Places205 categories have no scene: {missing[:5]}")
  ordered = {n: categories[n] for n in sorted(categories, key=grammar.places205.get)}
  return dataclasses.replace(grammar, categories=ordered), stories


def attach_stories(grammar, path, raw):
  """`grammar` with each category's Story compiled from the raw stories JSON at `path`."""
  def fail(where, message):
    raise DataError(f"{where}: {message}", path=path)

  def pools(entry, where, allowed=STORY_FIELDS):
    if not isinstance(entry, dict):
      fail(where, "expected a JSON object")
    out = {}
    for field, phrases in entry.items():
      if field not in allowed:
        fail(where, f"unknown field {field!r}; expected one of {', '.join(allowed)}")
      if not isinstance(phrases, list) or not all(
          isinstance(p, str) and p.strip() and not p.strip().endswith((".", "!", "?"))
          for p in phrases):
        fail(f"{where}.{field}", "expected a list of phrases (not sentences)")
      out[field] = tuple(p.strip() for p in phrases)
    return out

  if not isinstance(raw, dict):
    fail("top level", "expected a JSON object")
  unknown = set(raw) - {"about", "kinds", "settings", "categories"}
  if unknown:
    fail("top level", f"unknown key(s) {', '.join(sorted(unknown))}")
  kinds = {k: pools(v, f"kinds.{k}") for k, v in raw.get("kinds", {}).items()}
  for kind in kinds:
    if kind not in KINDS:
      fail(f"kinds.{kind}", f"unknown kind; expected one of {KINDS}")
  settings = {k: pools(v, f"settings.{k}") for k, v in raw.get("settings", {}).items()}
  entries = raw.get("categories", {})
  if not isinstance(entries, dict):
    fail("categories", "expected an object of category -> story")
  categories = dict(grammar.categories)
  for name, entry in entries.items():
    where = f"categories.{name}"
    if name not in grammar.places205:
      fail(where, f"{name!r} is not a Places205 category")
    if name not in categories:
      continue  # a story for a category this grammar does not define
    entry = dict(entry) if isinstance(entry, dict) else fail(where, "expected a JSON object")
    names = entry.pop("settings", [])
    if not isinstance(names, list) or any(n not in settings for n in names):
      fail(f"{where}.settings", f"expected a list of settings among {', '.join(settings)}")
    category = categories[name]
    own = pools(entry, where)
    for field, phrases in own.items():
      for phrase in phrases:
        if category.banned.search(phrase):
          fail(f"{where}.{field}", f"phrase {phrase!r} names the category")
    shared = {}
    for pool in [settings[n] for n in names] + [kinds.get(category.kind, {})]:
      for field, phrases in pool.items():
        shared.setdefault(field, [])
        shared[field] += [p for p in phrases if not category.banned.search(p)
                          and p not in shared[field]]
    categories[name] = dataclasses.replace(
        category, story=Story(own, {f: tuple(p) for f, p in shared.items()}))
  for name, category in categories.items():
    if not category.story.fields() and category.kind in kinds:
      categories[name] = dataclasses.replace(
          category, story=Story({}, {f: tuple(p for p in ps if not category.banned.search(p))
                                     for f, ps in kinds[category.kind].items()}))
  return dataclasses.replace(grammar, categories=categories)


def _read_json(path):
  def no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
      if key in seen:
        raise DataError(f"duplicate key {key!r}", path=path)
      seen[key] = value
    return seen

  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError as e:
    raise DataError(f"cannot read the scene grammar: {e}", path=path) from e
  try:
    return json.loads(text, object_pairs_hook=no_duplicates)
  except json.JSONDecodeError as e:
    raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno) from e


class _Compiler:
  """Checks the raw JSON entry by entry and builds the frozen Grammar."""

  def __init__(self, path, raw, places205):
    self.path = path
    self.raw = raw
    self.places205 = places205

  def fail(self, where, message):
    raise DataError(f"{where}: {message}", path=self.path)

  def compile(self):
    raw = self.raw
    if not isinstance(raw, dict):
      self.fail("top level", "expected a JSON object")
    self.keys(raw, "top level", required=("colors", "objects", "categories", "distractors"),
              optional=("about", "irregular_plurals", "mass_nouns"))
    self.palette = self.compile_palette(raw["colors"])
    plurals = raw.get("irregular_plurals", {})
    if not isinstance(plurals, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in plurals.items()):
      self.fail("irregular_plurals", "expected an object of word -> plural")
    mass_nouns = self.words(raw["mass_nouns"], "mass_nouns") if "mass_nouns" in raw else ()
    self.objects = {}
    if not isinstance(raw["objects"], list) or not raw["objects"]:
      self.fail("objects", "expected a non-empty list")
    for i, entry in enumerate(raw["objects"]):
      obj = self.compile_object(entry, i)
      self.objects[obj.name] = obj
    for obj in self.objects.values():
      for support in obj.on:
        self.known_object(support, f"object {obj.name!r}, on")
    distractors = raw["distractors"]
    if not isinstance(distractors, list) or not all(
        isinstance(s, str) and s.strip() for s in distractors):
      self.fail("distractors", "expected a list of non-empty sentences")
    categories = {}
    if not isinstance(raw["categories"], list) or not raw["categories"]:
      self.fail("categories", "expected a non-empty list")
    for i, entry in enumerate(raw["categories"]):
      category = self.compile_category(entry, i)
      if category.name in categories:
        self.fail(f"categories[{i}]", f"duplicate category {category.name!r}")
      categories[category.name] = category
    object_words = banned_pattern([w for obj in self.objects.values() for w in obj.synonyms])
    for sentence in distractors:
      for category in categories.values():
        if category.banned.search(sentence):
          self.fail("distractors", f"sentence {sentence!r} names category {category.name!r}")
      found = object_words.search(sentence)
      if found:
        self.fail("distractors", f"sentence {sentence!r} names the object {found.group(0)!r}; "
                  "distractors must say nothing about the scene's content")
    return Grammar(
        path=self.path, palette=self.palette, objects=self.objects, categories=categories,
        distractors=tuple(distractors), irregular_plurals={k.lower(): v for k, v in plurals.items()},
        mass_nouns=frozenset(mass_nouns), places205=dict(self.places205))

  # --- helpers ---

  def keys(self, entry, where, required=(), optional=()):
    if not isinstance(entry, dict):
      self.fail(where, "expected a JSON object")
    for key in required:
      if key not in entry:
        self.fail(where, f"missing key {key!r}")
    unknown = set(entry) - set(required) - set(optional)
    if unknown:
      self.fail(where, f"unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                f"{', '.join(list(required) + list(optional))}")

  def number(self, value, where, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
      self.fail(where, f"expected a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
      self.fail(where, f"{value!r} is outside [{lo}, {hi}]")
    return float(value)

  def range_(self, value, where, lo=None, hi=None):
    if not isinstance(value, list) or len(value) != 2:
      self.fail(where, f"expected [low, high], got {value!r}")
    a, b = (self.number(v, where, lo, hi) for v in value)
    if a > b:
      self.fail(where, f"low {a} is above high {b}")
    return (a, b)

  def words(self, value, where):
    if not isinstance(value, list) or not value or not all(
        isinstance(w, str) and w.strip() for w in value):
      self.fail(where, "expected a non-empty list of words")
    return tuple(w.strip().lower() for w in value)

  def color_names(self, value, where):
    names = self.words(value, where)
    for name in names:
      if name not in self.palette:
        self.fail(where, f"unknown colour {name!r}")
    return names

  def known_object(self, name, where):
    if name not in self.objects:
      self.fail(where, f"unknown object {name!r}")
    return self.objects[name]

  # --- sections ---

  def compile_palette(self, colors):
    if not isinstance(colors, dict) or not colors:
      self.fail("colors", "expected an object of name -> [r, g, b]")
    palette = {}
    for name, rgb in colors.items():
      if (not isinstance(rgb, list) or len(rgb) != 3 or not all(
          isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb)):
        self.fail(f"colors[{name!r}]", f"expected [r, g, b] integers in 0..255, got {rgb!r}")
      palette[name.lower()] = tuple(rgb)
    return palette

  def compile_prior(self, raw, where, base=None):
    self.keys(raw, where, optional=("anchor", "y", "x", "h", "aspect"))
    if base is None:
      for key in ("anchor", "y", "x", "h", "aspect"):
        if key not in raw:
          self.fail(where, f"missing key {key!r}")
    values = dataclasses.asdict(base) if base else {}
    if "anchor" in raw:
      if raw["anchor"] not in ANCHORS:
        self.fail(f"{where}.anchor", f"unknown anchor {raw['anchor']!r}; expected one of {ANCHORS}")
      values["anchor"] = raw["anchor"]
    for key, lo, hi in (("y", -0.5, 1.5), ("x", -0.5, 1.5), ("h", 0.001, 2.0), ("aspect", 0.01, 20)):
      if key in raw:
        values[key] = self.range_(raw[key], f"{where}.{key}", lo, hi)
    return Prior(**values)

  def compile_parts(self, shape, where):
    if not isinstance(shape, list) or not shape:
      self.fail(where, "expected a non-empty list of parts")
    parts = []
    for i, raw in enumerate(shape):
      part_where = f"{where}[{i}]"
      if not isinstance(raw, dict):
        self.fail(part_where, "expected a JSON object")
      kinds = [k for k in ("rect", "ellipse", "dome", "poly", "grid") if k in raw]
      if len(kinds) != 1:
        self.fail(part_where, "expected exactly one of rect, ellipse, dome, poly, grid")
      kind = kinds[0]
      optional = ["color", "colors"] + (["rows", "cols", "fill"] if kind == "grid" else [])
      self.keys(raw, part_where, required=(kind,), optional=optional)
      color = raw.get("color", "main")
      if color not in COLOR_ROLES and color not in self.palette:
        self.fail(part_where, f"unknown colour {color!r}")
      cell_colors = self.color_names(raw["colors"], f"{part_where}.colors") if "colors" in raw else ()
      if kind == "poly":
        points = raw["poly"]
        if not isinstance(points, list) or len(points) < 3 or not all(
            isinstance(p, list) and len(p) == 2 for p in points):
          self.fail(part_where, "poly needs at least 3 [y, x] points")
        pts = np.array([[self.number(v, part_where, -0.5, 1.5) for v in p] for p in points],
                       np.float32)
        parts.append(Part(pts, color))
        continue
      box = raw[kind]
      if not isinstance(box, list) or len(box) != 4:
        self.fail(part_where, f"{kind} needs [ymin, xmin, ymax, xmax]")
      y0, x0, y1, x1 = (self.number(v, part_where, -0.5, 1.5) for v in box)
      if y1 <= y0 or x1 <= x0:
        self.fail(part_where, f"empty box {box!r}")
      if kind == "grid":
        rows, cols = raw.get("rows", 1), raw.get("cols", 1)
        if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 32
                   for n in (rows, cols)):
          self.fail(part_where, "rows and cols must be integers in 1..32")
        fill = raw.get("fill", 0.8)
        if not isinstance(fill, list):
          fill = [fill, fill]
        if len(fill) != 2:
          self.fail(f"{part_where}.fill", "expected a fraction or [y fraction, x fraction]")
        fill_y, fill_x = (self.number(f, f"{part_where}.fill", 0.01, 1.0) for f in fill)
        ch, cw = (y1 - y0) / rows, (x1 - x0) / cols
        for r in range(rows):
          for c in range(cols):
            cy, cx = y0 + (r + 0.5) * ch, x0 + (c + 0.5) * cw
            parts.append(Part(_rect(cy - ch * fill_y / 2, cx - cw * fill_x / 2,
                                    cy + ch * fill_y / 2, cx + cw * fill_x / 2), color, cell_colors))
      elif kind == "rect":
        parts.append(Part(_rect(y0, x0, y1, x1), color))
      elif kind == "ellipse":
        parts.append(Part(_ellipse(y0, x0, y1, x1), color))
      else:
        parts.append(Part(_dome(y0, x0, y1, x1), color))
    return tuple(parts)

  def compile_object(self, raw, i):
    where = f"objects[{i}]"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
      where = f"object {raw['name']!r}"
    self.keys(raw, where, required=("name", "synonyms", "colors", "texture"),
              optional=("shape", "prior", "layer", "on", "perspective", "stuff", "color_after"))
    name = raw["name"].strip().lower()
    if not name or name in self.objects:
      self.fail(where, "empty or duplicate object name")
    stuff = raw.get("stuff", False)
    if not isinstance(stuff, bool):
      self.fail(f"{where}.stuff", "expected true or false")
    synonyms = self.words(raw["synonyms"], f"{where}.synonyms")
    if raw["texture"] not in TEXTURES:
      self.fail(f"{where}.texture", f"unknown texture {raw['texture']!r}; expected one of {TEXTURES}")
    if not stuff and ("shape" not in raw or "prior" not in raw):
      self.fail(where, "a thing needs a shape and a prior (only stuff may omit them)")
    if ("shape" in raw) != ("prior" in raw):
      self.fail(where, "shape and prior go together")
    parts = self.compile_parts(raw["shape"], f"{where}.shape") if "shape" in raw else ()
    prior = self.compile_prior(raw["prior"], f"{where}.prior") if "prior" in raw else None
    perspective = raw.get("perspective", False)
    if not isinstance(perspective, bool):
      self.fail(f"{where}.perspective", "expected true or false")
    on = self.words(raw["on"], f"{where}.on") if "on" in raw else ()
    return ObjectType(
        name=name, synonyms=synonyms, colors=self.color_names(raw["colors"], f"{where}.colors"),
        texture=raw["texture"], parts=parts, prior=prior,
        layer=self.number(raw.get("layer", 3), f"{where}.layer", 0, 10), on=on,
        perspective=perspective, stuff=stuff,
        points=(np.concatenate([p.points for p in parts]) if parts else np.zeros((0, 2), np.float32)),
        part_sizes=tuple(len(p.points) for p in parts),
        color_after=self.words([raw["color_after"]], f"{where}.color_after")[0]
        if "color_after" in raw else "")

  def compile_category(self, raw, i):
    where = f"categories[{i}]"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
      where = f"category {raw['name']!r}"
    self.keys(raw, where, required=("name", "places205", "kind", "synonyms", "layers", "objects"))
    name = raw["name"]
    if name not in self.places205:
      self.fail(where, f"{name!r} is not a Places205 category (see {PLACES205_FILE})")
    index = raw["places205"]
    if index != self.places205[name]:
      self.fail(f"{where}.places205",
                f"index {index!r} does not match {PLACES205_FILE} ({self.places205[name]})")
    if raw["kind"] not in KINDS:
      self.fail(f"{where}.kind", f"unknown kind {raw['kind']!r}; expected one of {KINDS}")
    synonyms = self.words(raw["synonyms"], f"{where}.synonyms")
    banned = banned_pattern(synonyms + (name.replace("_", " ").replace("/", " "),))
    layers, horizon = self.compile_layers(raw["layers"], f"{where}.layers")
    if not isinstance(raw["objects"], dict) or not raw["objects"]:
      self.fail(f"{where}.objects", "expected a non-empty object of name -> settings")
    entries = [self.compile_entry(obj_name, settings, f"{where}, object {obj_name!r}")
               for obj_name, settings in raw["objects"].items()]
    placed = {e.object for e in entries}
    for entry in entries:
      if entry.within and not set(entry.within) & placed:
        self.fail(f"{where}, object {entry.object!r}",
                  f"within {list(entry.within)} but none of them is in this category")
    # Things must stay describable; a band named like its category (the sky of "sky") is
    # left out of that category's descriptions.
    used = {e.object for e in entries}
    for obj_name in sorted(used):
      if all(banned.search(s) for s in self.objects[obj_name].synonyms):
        self.fail(f"{where}, object {obj_name!r}",
                  "every synonym names the category; add a synonym descriptions may use")
    entries.sort(key=lambda e: bool(e.on or e.within))
    return Category(name=name, places205=index, kind=raw["kind"], synonyms=synonyms,
                    layers=tuple(layers), horizon_layer=horizon, entries=tuple(entries),
                    banned=banned)

  def compile_layers(self, raw, where):
    if not isinstance(raw, list) or not raw:
      self.fail(where, "expected a non-empty list of bands")
    layers, horizon = [], None
    for i, band in enumerate(raw):
      band_where = f"{where}[{i}]"
      last = i == len(raw) - 1
      self.keys(band, band_where, required=("object",),
                optional=("bottom", "p", "wobble", "colors", "texture", "horizon"))
      obj = self.known_object(band["object"], band_where)
      if not obj.stuff:
        self.fail(band_where, f"{obj.name!r} is not a stuff object and cannot fill a band")
      if last and ("bottom" in band or "p" in band):
        self.fail(band_where, "the last band reaches the image bottom: no bottom or p")
      if not last and "bottom" not in band:
        self.fail(band_where, "missing key 'bottom'")
      texture = band.get("texture")
      if texture is not None and texture not in TEXTURES:
        self.fail(f"{band_where}.texture", f"unknown texture {texture!r}")
      if band.get("horizon", False):
        if horizon is not None:
          self.fail(band_where, "only one band can mark the horizon")
        horizon = i
      layers.append(Layer(
          object=obj.name,
          bottom=None if last else self.range_(band["bottom"], f"{band_where}.bottom", 0, 1),
          p=self.number(band.get("p", 1.0), f"{band_where}.p", 0, 1),
          wobble=self.number(band.get("wobble", 0.01), f"{band_where}.wobble", 0, 0.2),
          colors=self.color_names(band["colors"], f"{band_where}.colors") if "colors" in band else None,
          texture=texture))
    if horizon is None:
      horizon = next((i for i, layer in enumerate(layers) if layer.object in ("sky", "wall")), 0)
    return layers, horizon

  def compile_entry(self, obj_name, raw, where):
    obj = self.known_object(obj_name, where)
    self.keys(raw, where, required=("p",), optional=("count", "prior", "colors", "on", "within", "layer"))
    if obj.prior is None:
      self.fail(where, f"stuff object {obj_name!r} has no shape and prior to be placed as a thing")
    count = raw.get("count", [1, 1])
    if (not isinstance(count, list) or len(count) != 2 or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in count)
        or not 1 <= count[0] <= count[1] <= 20):
      self.fail(f"{where}.count", f"expected [low, high] integers in 1..20, got {count!r}")
    on = self.words(raw["on"], f"{where}.on") if "on" in raw else obj.on
    within = self.words(raw["within"], f"{where}.within") if "within" in raw else ()
    for support in on + within:
      self.known_object(support, f"{where}, support")
      if support == obj_name:
        self.fail(where, "an object cannot stand on or within itself")
    if on and within:
      self.fail(where, "use either on or within, not both")
    prior = self.compile_prior(raw.get("prior", {}), f"{where}.prior", base=obj.prior)
    return Entry(
        object=obj_name, p=self.number(raw["p"], f"{where}.p", 0.0, 1.0), count=tuple(count),
        prior=prior,
        colors=self.color_names(raw["colors"], f"{where}.colors") if "colors" in raw else obj.colors,
        on=on, within=within,
        layer=self.number(raw.get("layer", obj.layer), f"{where}.layer", 0, 10))


def _rect(y0, x0, y1, x1):
  return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], np.float32)


def _ellipse(y0, x0, y1, x1):
  t = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS, endpoint=False)
  cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
  return np.stack([cy + ry * np.sin(t), cx + rx * np.cos(t)], 1).astype(np.float32)


def _dome(y0, x0, y1, x1):
  """Upper half of the ellipse whose centre is the bottom middle of the box."""
  t = np.linspace(np.pi, 0, DOME_POINTS)
  cx, rx, ry = (x0 + x1) / 2, (x1 - x0) / 2, y1 - y0
  return np.stack([y1 - ry * np.sin(t), cx + rx * np.cos(t)], 1).astype(np.float32)
