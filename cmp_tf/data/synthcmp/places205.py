"""SynthCMP at Places205 scale: the 175 categories not written by hand, made from short entries.

Each entry of `data/places205_scenes.json` names a category's background bands, its typical
objects (the first always present), what one does there and the story settings it shares.
The rest is drawn from a generator seeded by the category's name, so every category is the
same on every machine and adding one changes no other: the bands' edges, each object's
presence probability and count, and one rare extra object of the category's kind. The
result is a raw category in scene_grammar.json's own format, compiled and checked by the
same code as the hand-written ones.
"""

import hashlib
import re

import numpy as np

SCENES_FILE = "places205_scenes.json"
ENTRY_KEYS = ("bands", "objects", "activities", "settings", "synonyms")
# Objects drawn as several instances; the others appear once.
COUNTABLE = frozenset("""person tree pine window chair car bird cloud bush rock house building boat
    cow sheep duck flag umbrella table bench picture lamp shelf bottle stool suitcase truck
    streetlight sign""".split())
# Words of a category's name that do not name it on their own ("temple/east_asia").
GENERIC_NAME_WORDS = frozenset("outdoor indoor home shop east south asia platform interior".split())
# Rare extras: one is added per category at a low probability (real scenes have clutter).
EXTRAS = {
    "indoor": ("plant", "clock", "picture", "lamp", "chair", "bottle", "door", "rug"),
    "outdoor": ("bird", "person", "tree", "bush", "cloud", "sign", "rock", "car"),
}


def name_rng(name):
  """A generator seeded by the category name alone (stable across runs and machines)."""
  digest = hashlib.sha256(f"synthcmp-places205/{name}".encode()).digest()
  return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def synonyms_of(name, extra=()):
  """The category's name without its qualifier, and its head noun ("tree farm" -> "farm";
  "shoe_shop" -> "shoe"), which on its own would name it too."""
  base = name.split("/")[0].replace("_", " ")
  words = [w for w in re.split(r"[\s/_]+", name) if w not in GENERIC_NAME_WORDS]
  head = [words[-1]] if len(words) > 1 else []
  return [base] + head + list(extra)


# Lower edges of the bands but the last, by band count: (low, high) of each edge's centre.
BAND_EDGES = {2: ((0.38, 0.62),), 3: ((0.3, 0.45), (0.55, 0.75))}
CEILING_EDGES = ((0.1, 0.2), (0.5, 0.65))


def _bands(bands, rng):
  """Layers: each band's lower edge drawn from its range, +- 0.04."""
  edges = CEILING_EDGES if bands[0] == "ceiling" else BAND_EDGES.get(len(bands), ())
  layers = []
  for band, (low, high) in zip(bands[:-1], edges):
    centre = float(rng.uniform(low, high))
    layers.append({"object": band, "bottom": [round(centre - 0.04, 3), round(centre + 0.04, 3)]})
  return layers + [{"object": bands[-1]}]


def raw_category(name, entry, index, kind, known_objects):
  """The scene_grammar.json form of one procedural category (`index`: its Places205 index)."""
  rng = name_rng(name)
  objects = {}
  for i, obj in enumerate(entry["objects"]):
    settings = {"p": 1.0 if i == 0 else round(float(rng.uniform(0.3, 0.9)), 2)}
    if obj in COUNTABLE:
      high = int(rng.integers(1, 5))
      if high > 1:
        settings["count"] = [1, high]
    objects[obj] = settings
  extras = [o for o in EXTRAS[kind] if o not in objects and o in known_objects]
  if extras:
    objects[extras[int(rng.integers(len(extras)))]] = {"p": round(float(rng.uniform(0.08, 0.25)), 2)}
  return {"name": name, "places205": index, "kind": kind,
          "synonyms": synonyms_of(name, entry.get("synonyms", ())),
          "layers": _bands(entry["bands"], rng), "objects": objects}


def story_entry(entry):
  """The category's story, in scene_stories.json's form."""
  return {"settings": list(entry.get("settings", ())), "activities": list(entry["activities"])}
