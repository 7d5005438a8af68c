"""SynthCMP generator: grammar, determinism, unpaired sampling, renderers, descriptions."""

import io
import json
import pickle
import re

import numpy as np
import pytest
from PIL import Image

from cmp_tf import modalities as mod_lib
from cmp_tf import paths
from cmp_tf.data import synthcmp
from cmp_tf.errors import DataError
from cmp_tf.text.split import split_sentences


@pytest.fixture(scope="module")
def grammar():
  return synthcmp.load_grammar()


def _image(record):
  image = Image.open(io.BytesIO(record.image_png))
  assert image.mode == "RGB"
  return np.asarray(image)


def test_shipped_grammar_is_rich_and_named_after_places205(grammar):
  assert len(grammar.category_names) >= 25
  assert len(grammar.object_names) >= 40
  places = [line.split() for line in paths.shipped("places205_categories.txt").read_text().splitlines()]
  index = {re.sub(r"^/[a-z]/", "", path): int(i) for path, i in places}
  for name in grammar.category_names:
    assert grammar.places205_index(name) == index[name]
  assert grammar.places205_index("kitchen") == 108
  with pytest.raises(KeyError):
    grammar.places205_index("moon_base")
  # Objects are shared: most things appear in several categories.
  users = {}
  for name in grammar.category_names:
    for entry in grammar.category(name).entries:
      users.setdefault(entry.object, set()).add(name)
  shared = [o for o, cats in users.items() if len(cats) >= 2]
  assert len(shared) >= 0.7 * len(users)
  for obj in grammar.objects.values():
    assert obj.synonyms and obj.colors


def test_default_heldout_is_the_papers_fraction(grammar):
  heldout = synthcmp.default_heldout_categories(grammar)
  assert len(heldout) == round(len(grammar.category_names) * 55 / 205)
  assert len(set(heldout)) == len(heldout)
  assert set(heldout) <= set(grammar.category_names)


def test_heldout_file_errors_name_file_and_line(grammar, tmp_path):
  path = tmp_path / "heldout.txt"
  path.write_text("# comment\nkitchen\nmoon_base\n")
  with pytest.raises(DataError, match=r"heldout\.txt, line 3: 'moon_base'"):
    synthcmp.default_heldout_categories(grammar, path)


@pytest.mark.parametrize("modality", mod_lib.ALL_MODALITIES)
def test_same_seed_same_bytes_other_seed_other_bytes(grammar, modality):
  args = (grammar, modality, "train", "harbor", 3, 7)
  a = synthcmp.render_record(*args, seed=11, image_size=64)
  b = synthcmp.render_record(*args, seed=11, image_size=64)
  c = synthcmp.render_record(*args, seed=12, image_size=64)
  assert a.image_png == b.image_png and a.text == b.text
  assert a.object_names == b.object_names
  np.testing.assert_array_equal(a.object_boxes, b.object_boxes)
  assert (a.image_png, a.text) != (c.image_png, c.text)
  assert a.example_id == f"{modality}/train/harbor/00007" and a.label == 3
  assert a.category == "harbor" and a.modality == modality
  if modality == mod_lib.DSC:
    assert a.text and not a.image_png and a.vector is None
  else:
    assert a.image_png.startswith(b"\x89PNG") and not a.text


def test_modalities_are_unpaired(grammar):
  """The same category and index gives a different scene instance in every modality."""
  for category in ("kitchen", "coast", "parking_lot"):
    for index in range(3):
      scenes = []
      for modality in mod_lib.IMAGE_MODALITIES:
        record = synthcmp.render_record(grammar, modality, "val", category, 0, index, 5, 32)
        scenes.append((tuple(record.object_names), record.object_boxes.round(4).tobytes()))
      assert len(set(scenes)) == len(scenes)
  # Splits and indices are independent too.
  a = synthcmp.render_record(grammar, "nat", "train", "kitchen", 0, 0, 5, 32)
  b = synthcmp.render_record(grammar, "nat", "val", "kitchen", 0, 0, 5, 32)
  assert a.image_png != b.image_png


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("modality", mod_lib.IMAGE_MODALITIES)
def test_images_render_at_size_with_valid_boxes(grammar, modality, size):
  for i, category in enumerate(grammar.category_names[::3]):
    record = synthcmp.render_record(grammar, modality, "train", category, i, i, 0, size)
    assert _image(record).shape == (size, size, 3)
    boxes = record.boxes()
    assert boxes.shape == (len(record.object_names), 4) and len(record.object_names) >= 2
    assert np.all((boxes >= 0) & (boxes <= 1))
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert set(record.object_names) <= set(grammar.object_names)


def test_large_sizes_render(grammar):
  for modality in mod_lib.IMAGE_MODALITIES:
    record = synthcmp.render_record(grammar, modality, "val", "bedroom", 0, 0, 0, 227)
    assert _image(record).shape == (227, 227, 3)


def test_renderers_have_different_low_level_statistics(grammar):
  stats = {m: [] for m in mod_lib.IMAGE_MODALITIES}
  for modality in mod_lib.IMAGE_MODALITIES:
    for i, category in enumerate(grammar.category_names[:10]):
      pixels = _image(synthcmp.render_record(grammar, modality, "train", category, 0, i, 1, 64))
      flat = pixels.reshape(-1, 3)
      grey = np.all(flat == flat[:, :1], axis=1).mean()
      white = np.all(flat >= 245, axis=1).mean()
      colours = len(np.unique(flat, axis=0))
      stats[modality].append((grey, white, colours))
  nat, clp, ldr, spt = (np.array(stats[m]) for m in ("nat", "clp", "ldr", "spt"))
  assert nat[:, 2].min() > 800  # noise, shading, blur: thousands of colours
  assert clp[:, 2].max() < 80  # flat fills: a few dozen colours
  assert clp[:, 1].mean() < 0.3  # filled, not white paper
  for sketchy in (ldr, spt):  # grey ink on white paper
    assert sketchy[:, 0].min() == 1.0 and sketchy[:, 1].mean() > 0.6


def test_descriptions_never_name_the_category(grammar):
  for label, category in enumerate(grammar.category_names):
    banned = grammar.category(category).banned
    for seed in range(4):
      for index in range(10):
        record = synthcmp.render_record(grammar, "dsc", "train", category, label, index, seed, 64)
        text = record.text
        assert not banned.search(text), (category, text)
        assert not re.search(category.replace("_", "[ _]"), text, re.IGNORECASE)
        assert len(record.object_names) == record.boxes().shape[0]


def test_descriptions_are_written_like_cmplaces(grammar):
  """Stories in three narrators, varied length, sparse objects, some garbled sentences."""
  texts = [synthcmp.render_record(grammar, "dsc", "val", c, 0, i, 0, 64).text
           for c in grammar.category_names for i in range(6)]
  joined = " ".join(texts)
  assert re.search(r"\b(left|right) of\b", joined)
  assert re.search(r"\b(red|blue|green|white|grey)\b", joined)
  assert re.search(r"\b(two|three|four)\b", joined)
  assert sum(d in joined for d in grammar.distractors) >= 5
  assert len(set(texts)) == len(texts)
  for pattern in (r"\bI (could hear|went there|like to)\b", r"\bYou (can|would|come)\b",
                  r"\bPeople (go there|\w+ here)\b", r"\b[a-z][^.]*[a-z]$"):
    assert re.search(pattern, joined, re.MULTILINE) or any(
        re.search(pattern, t) for t in texts), pattern
  mentioned = [len(synthcmp.render_record(grammar, "dsc", "val", c, 0, i, 0, 64).object_names)
               for c in grammar.category_names for i in range(6)]
  assert 0.5 < np.mean([m > 0 for m in mentioned]) < 1.0  # objects sparser, not gone
  lengths = [len(split_sentences(t)) for t in texts]
  assert min(lengths) >= 1 and max(lengths) >= 6 and len(set(lengths)) >= 4
  kitchen = " ".join(synthcmp.render_record(grammar, "dsc", "train", "kitchen", 0, i, 0, 64).text
                     for i in range(40))
  own = grammar.category("kitchen").story.own
  assert any(p in kitchen for field in own.values() for p in field)


def test_generate_records_labels_and_order(grammar):
  categories = ["coast", "kitchen"]
  records = list(synthcmp.generate_records(grammar, "clp", "val", categories, 3, 0, 32))
  assert [r.label for r in records] == [0, 0, 0, 1, 1, 1]
  assert [r.category for r in records] == ["coast"] * 3 + ["kitchen"] * 3
  assert records[4].example_id == "clp/val/kitchen/00001"
  with pytest.raises(KeyError, match="moon_base"):
    list(synthcmp.generate_records(grammar, "clp", "val", ["moon_base"], 1, 0, 32))


def test_bad_arguments_are_refused(grammar):
  with pytest.raises(ValueError, match="modality"):
    synthcmp.render_record(grammar, "xyz", "train", "kitchen", 0, 0, 0, 32)
  with pytest.raises(ValueError, match="split"):
    synthcmp.render_record(grammar, "nat", "test", "kitchen", 0, 0, 0, 32)
  with pytest.raises(ValueError, match="image_size"):
    synthcmp.render_record(grammar, "nat", "train", "kitchen", 0, 0, 0, 4)
  with pytest.raises(ValueError, match="seed"):
    synthcmp.render_record(grammar, "nat", "train", "kitchen", 0, 0, -1, 32)


def test_grammar_and_render_record_pickle(grammar):
  """The build renders in a multiprocessing Pool: both must survive pickling."""
  clone = pickle.loads(pickle.dumps(grammar))
  render = pickle.loads(pickle.dumps(synthcmp.render_record))
  a = synthcmp.render_record(grammar, "ldr", "train", "office", 0, 2, 0, 32)
  b = render(clone, "ldr", "train", "office", 0, 2, 0, 32)
  assert a.image_png == b.image_png


def test_spatial_text_layouts(grammar):
  png = synthcmp.render_spatial_text([("sky", 0.5, 0.1), ("tree", (0.4, 0.1, 0.9, 0.4))], 64)
  pixels = np.asarray(Image.open(io.BytesIO(png)))
  assert pixels.shape == (64, 64, 3)
  ink = pixels.min(axis=2) < 128
  assert ink[:16].any() and ink[26:58, 6:26].any()  # "sky" at the top, "tree" lower left
  assert not ink[40:, 40:].any()
  assert synthcmp.render_spatial_text([("sky", 0.5, 0.1)], 32) == synthcmp.render_spatial_text(
      [("sky", 0.5, 0.1)], 32)
  for bad in ([("sky", 1.5, 0.1)], [("", 0.5, 0.5)], [("sky",)], [("sky", (0.5, 0.5, 0.1, 0.9))]):
    with pytest.raises(ValueError, match="layout item 0"):
      synthcmp.render_spatial_text(bad, 64)


def _write_grammar(tmp_path, edit):
  raw = json.loads(paths.shipped("scene_grammar.json").read_text())
  edit(raw)
  path = tmp_path / "grammar.json"
  path.write_text(json.dumps(raw))
  return path


def _category(raw, name):
  return next(c for c in raw["categories"] if c["name"] == name)


@pytest.mark.parametrize("edit, message", [
    (lambda g: _category(g, "kitchen")["objects"].update({"stov": {"p": 1.0}}),
     r"category 'kitchen', object 'stov': unknown object 'stov'"),
    (lambda g: g["categories"].append(dict(_category(g, "kitchen"))),
     r"duplicate category 'kitchen'"),
    (lambda g: _category(g, "kitchen").update({"name": "moon_base"}),
     r"category 'moon_base': 'moon_base' is not a Places205 category"),
    (lambda g: _category(g, "kitchen").update({"places205": 3}),
     r"category 'kitchen'.places205: index 3 does not match"),
    (lambda g: g["objects"][20].update({"colors": ["ultraviolet"]}),
     r"object 'window'.colors: unknown colour 'ultraviolet'"),
    (lambda g: g["objects"][20].update({"texture": "fur"}),
     r"object 'window'.texture: unknown texture 'fur'"),
    (lambda g: _category(g, "coast")["objects"]["cloud"].update({"count": [3, 1]}),
     r"category 'coast', object 'cloud'.count"),
    (lambda g: _category(g, "coast")["layers"][0].update({"object": "car"}),
     r"'car' is not a stuff object"),
    (lambda g: g["distractors"].append("It looks like a kitchen."),
     r"distractors: sentence 'It looks like a kitchen.' names category 'kitchen'"),
    (lambda g: g["distractors"].append("Two cars drive by."),
     r"distractors: sentence 'Two cars drive by.' names the object 'cars'"),
    (lambda g: _category(g, "coast")["objects"]["cloud"].update({"colour": "red"}),
     r"category 'coast', object 'cloud': unknown key\(s\) colour"),
])
def test_grammar_errors_name_file_and_entry(tmp_path, edit, message):
  path = _write_grammar(tmp_path, edit)
  with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message):
    synthcmp.load_grammar(path)


def test_grammar_json_errors(tmp_path):
  path = tmp_path / "broken.json"
  path.write_text('{"colors": {},\n "objects": [,]}')
  with pytest.raises(DataError, match=r"broken\.json, line 2: invalid JSON"):
    synthcmp.load_grammar(path)
  path.write_text('{"colors": {}, "colors": {}}')
  with pytest.raises(DataError, match="duplicate key 'colors'"):
    synthcmp.load_grammar(path)
  with pytest.raises(DataError, match="cannot read"):
    synthcmp.load_grammar(tmp_path / "missing.json")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["categories"]["kitchen"]["activities"].append("cook in the kitchen"),
     r"categories.kitchen.activities: phrase 'cook in the kitchen' names the category"),
    (lambda s: s["categories"]["kitchen"].update({"smells": ["bread"]}),
     r"categories.kitchen: unknown field 'smells'"),
    (lambda s: s["categories"]["kitchen"].update({"settings": ["home", "moon"]}),
     r"categories.kitchen.settings: expected a list of settings"),
    (lambda s: s["categories"].update({"moon_base": {"purpose": ["live"]}}),
     r"categories.moon_base: 'moon_base' is not a Places205 category"),
    (lambda s: s["settings"]["home"]["people"].append("my parents."),
     r"settings.home.people: expected a list of phrases \(not sentences\)"),
    (lambda s: s["kinds"].update({"underwater": {}}), r"kinds.underwater: unknown kind"),
])
def test_story_errors_name_file_and_entry(tmp_path, edit, message):
  raw = json.loads(paths.shipped(synthcmp.grammar.STORIES_FILE).read_text())
  edit(raw)
  path = tmp_path / "stories.json"
  path.write_text(json.dumps(raw))
  with pytest.raises(DataError, match=re.escape(str(path)) + ".*" + message):
    synthcmp.load_grammar(stories_path=path)


def test_shared_story_phrases_naming_a_category_are_left_out_for_it(grammar):
  # "home" is shared by the kitchen and the residential neighborhood; no pool of a category
  # holds a phrase that names it
  for category in grammar.categories.values():
    for pools in (category.story.own, category.story.shared):
      for phrases in pools.values():
        assert not any(category.banned.search(p) for p in phrases), category.name
    assert category.story.fields(), category.name
