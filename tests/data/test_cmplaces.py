"""The CMPlaces ingester on a fixture tree in the published layout, good and bad."""

import io
import re

import cmplaces_fixture
import numpy as np
import pytest
from PIL import Image

from cmp_tf.data import cmplaces, features
from cmp_tf.errors import DataError
from cmp_tf.text import encoders as te
from cmp_tf.text.split import split_sentences

IMAGE_SIZE = 32


@pytest.fixture
def tree(tmp_path):
  return cmplaces_fixture.build(tmp_path / "cmplaces")


def _png(record):
  image = Image.open(io.BytesIO(record.image_png))
  assert image.format == "PNG"
  return image


def test_categories_keep_file_indices_and_bare_names(tree):
  assert cmplaces.load_categories(tree.root) == ["kitchen", "abbey", "desert/sand"]


@pytest.mark.parametrize("name, bare", [
    ("/a/abbey", "abbey"), ("a/abbey", "abbey"), ("abbey", "abbey"),
    ("/d/desert/sand", "desert/sand"), ("desert/sand", "desert/sand"),
    ("/s/swimming_pool/outdoor", "swimming_pool/outdoor"),
])
def test_normalize_category_name(name, bare):
  assert cmplaces.normalize_category_name(name) == bare


@pytest.mark.parametrize("content, line, message", [
    ("/a/abbey 0\n/b/beach 1\n/a/abbey 2\n", 3, "category 'abbey' is listed twice (first on line 1)"),
    ("abbey 0\nbeach 1\n/b/beach 2\n", 3, "category 'beach' is listed twice"),
    ("abbey 0\nbeach 1\ncastle 1\n", 3, "category index 1 is used twice (first on line 2)"),
    ("abbey 0\n\nbeach one\n", 3, "category index 'one' is not an integer"),
    ("abbey 0\nbeach\n", 2, "expected 'name index'"),
    ("abbey -1\n", 1, "negative category index -1"),
    ("abbey 0\nbeach 2\n", None, "must be 0..1 without gaps; missing 1"),
    ("\n\n", None, "no categories listed"),
    (b"abbey 0\nb\xe9ach 1\n", 2, "not UTF-8 text"),
])
def test_bad_category_files(tmp_path, content, line, message):
  path = tmp_path / "categories.txt"
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content)
  where = f"{path}, line {line}: " if line else f"{path}: "
  with pytest.raises(DataError, match=re.escape(where) + ".*" + re.escape(message)):
    cmplaces.read_categories(path)


def test_missing_root_and_category_file(tmp_path):
  missing = tmp_path / "nowhere"
  for call in (lambda: cmplaces.load_categories(missing),
               lambda: cmplaces.scan(missing, "ldr", "train", 3)):
    with pytest.raises(DataError, match=re.escape(f"{missing}: CMPlaces dataset root does not")):
      call()
  (tmp_path / "empty").mkdir()
  with pytest.raises(DataError, match=re.escape("labels/categories.txt: file does not exist")):
    cmplaces.load_categories(tmp_path / "empty")


def test_missing_label_file_names_it(tree):
  (tree.root / "labels" / "ldr_val.txt").unlink()
  with pytest.raises(DataError, match=re.escape(
      f"{tree.root}/labels: no label file for ldr/val: tried ldr_val.txt, linedrawing_val.txt, "
      "linedrawings_val.txt, line_drawing_val.txt, line_drawings_val.txt, sketch_val.txt, "
      "sketches_val.txt, ldr_test.txt,")):
    cmplaces.scan(tree.root, "ldr", "val", 3)


def test_scan_finds_every_listed_example(tree):
  for modality, per_split in tree.counts.items():
    for split, count in per_split.items():
      result = cmplaces.scan(tree.root, modality, split, 3)
      assert result.count == 3 * count and result.skipped == {}
      assert result.label_file == str(tree.label_file(modality, split))
      assert [e.line for e in result.entries] == list(range(1, result.count + 1))
  assert cmplaces.label_file_path(tree.root, "dsc", "val").endswith("labels/dsc_test.txt")


@pytest.mark.parametrize("modality", ["nat", "clp", "spt", "ldr"])
def test_image_records(tree, modality):
  records = list(cmplaces.iter_records(tree.root, modality, "train", tree.categories, IMAGE_SIZE))
  assert len(records) == 3 * tree.counts[modality]["train"]
  assert len({r.example_id for r in records}) == len(records)
  for record in records:
    assert record.modality == modality
    assert record.category == tree.categories[record.label]
    assert record.example_id.startswith(f"{modality}/train/{modality}/{record.category}/")
    assert (record.text, record.vector, list(record.object_names)) == ("", None, [])
    image = _png(record)
    assert (image.mode, image.size) == ("RGB", (IMAGE_SIZE, IMAGE_SIZE))
    parsed = features.from_tf_example(features.to_tf_example(record).SerializeToString())
    assert (parsed.label, parsed.image_png) == (record.label, record.image_png)
    decoded = features.decode_image(parsed.image_png, IMAGE_SIZE).numpy()
    assert decoded.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and decoded.std() > 0.01


def test_real_photo_is_resized_not_cropped(tree):
  entry = cmplaces.scan(tree.root, "nat", "train", 3).entries[0]
  with Image.open(entry.path) as original:
    expected = np.asarray(original.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE),
                                                         Image.Resampling.LANCZOS))
  record = next(cmplaces.iter_records(tree.root, "nat", "train", tree.categories, IMAGE_SIZE))
  np.testing.assert_array_equal(np.asarray(_png(record)), expected)


def test_transparent_clip_art_lands_on_white(tree):
  for record in cmplaces.iter_records(tree.root, "clp", "val", tree.categories, IMAGE_SIZE):
    pixels = np.asarray(_png(record))
    assert (pixels == 255).all(axis=-1).mean() > 0.2, record.example_id


class _CountingEncoder(te.SentenceEncoder):
  """Sentence -> (number of words, number of characters)."""

  name, dim = "counting", 2

  def _encode_batch(self, sentences):
    return [[len(s.split()), len(s)] for s in sentences]


def test_description_records_via_test_alias(tree):
  records = list(cmplaces.iter_records(tree.root, "dsc", "val", tree.categories, IMAGE_SIZE))
  assert len(records) == 3
  entries = cmplaces.scan(tree.root, "dsc", "val", 3).entries
  for record, entry in zip(records, entries):
    assert record.text == open(entry.path, encoding="utf-8").read().strip()
    assert (record.image_png, record.vector, record.label) == (b"", None, entry.label)
    assert record.example_id == f"dsc/val/{entry.relpath}"
  vectors = te.encode_descriptions(_CountingEncoder(), [r.text for r in records],
                                   where=[r.example_id for r in records])
  for record, vector in zip(records, vectors):
    record.vector = vector
    sentences = split_sentences(record.text)
    assert vector[0] == pytest.approx(np.mean([len(s.split()) for s in sentences]))
    parsed = features.from_tf_example(features.to_tf_example(record, 2).SerializeToString())
    assert parsed.text == record.text
    np.testing.assert_allclose(parsed.vector, vector)


def test_places205_split_files_with_their_own_images_root(tmp_path):
  places = tmp_path / "places205"
  tree = cmplaces_fixture.build(tmp_path / "cmplaces", places205_dir=places)
  for split in ("train", "val"):
    kwargs = dict(label_file=places / f"{split}_places205.csv", images_root=places / "images")
    result = cmplaces.scan(tree.root, "nat", split, 3, **kwargs)
    assert result.count == 3 * tree.counts["nat"][split]
    records = list(cmplaces.iter_records(tree.root, "nat", split, tree.categories, IMAGE_SIZE,
                                         **kwargs))
    assert records[0].example_id == f"nat/{split}/k/kitchen/{0 if split == 'train' else 100:08d}.jpg"
    assert [r.category for r in records][::tree.counts["nat"][split]] == list(tree.categories)


def _write(tree, relpath, data):
  path = tree.root / relpath
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(data, bytes):
    path.write_bytes(data)
  else:
    path.write_text(data, encoding="utf-8")
  return relpath


# (modality, label line written into the fixture, reason it is skipped with skip_bad, message)
BAD_LINES = {
    "missing_file": ("ldr", lambda t: "ldr/abbey/not_there.png 1", "missing_file",
                     "does not exist"),
    "undecodable_image": ("ldr", lambda t: f"{_write(t, 'ldr/x.png', b'not an image')} 1",
                          "undecodable_image", "cannot decode image"),
    "empty_description": ("dsc", lambda t: f"{_write(t, 'dsc/e.txt', '  ')} 2",
                          "empty_description", "is empty (no sentence)"),
    "punctuation_only_description": ("dsc", lambda t: f"{_write(t, 'dsc/p.txt', '...')} 2",
                                     "empty_description", "is empty (no sentence)"),
    "description_not_utf8": ("dsc", lambda t: _write(t, "dsc/b.txt", b"caf\xe9.") + " 0",
                             "bad_text", "is not UTF-8 text"),
    "label_out_of_range": ("clp", lambda t: "clp/kitchen/train_000.png 3", "label_out_of_range",
                           "label 3 is out of range [0, 3)"),
    "negative_label": ("clp", lambda t: "clp/kitchen/train_000.png -1", "label_out_of_range",
                       "label -1 is out of range"),
    "label_not_a_number": ("spt", lambda t: "spt/abbey/train_000.png abbey", "bad_line",
                           "label 'abbey' is not an integer"),
    "no_label": ("spt", lambda t: "spt/abbey/train_000.png", "bad_line",
                 "expected 'relative/path label'"),
    "duplicate_entry": ("nat", lambda t: "nat/abbey/train_001.jpg 1", "duplicate_entry",
                        "is listed again (first on line 5)"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_label_line_raises_or_is_skipped(tree, case):
  modality, make_line, reason, message = BAD_LINES[case]
  good = 3 * tree.counts[modality]["train"]
  line = tree.append_line(modality, "train", make_line(tree))
  where = f"{tree.label_file(modality, 'train')}, line {line}: "
  with pytest.raises(DataError, match=re.escape(where) + ".*" + re.escape(message)):
    cmplaces.scan(tree.root, modality, "train", 3)
  with pytest.raises(DataError, match=re.escape(where)):
    cmplaces.iter_records(tree.root, modality, "train", tree.categories, IMAGE_SIZE)

  result = cmplaces.scan(tree.root, modality, "train", 3, skip_bad=True)
  assert (result.count, result.skipped) == (good, {reason: 1})
  skipped = {}
  records = list(cmplaces.iter_records(tree.root, modality, "train", tree.categories,
                                       IMAGE_SIZE, skip_bad=True, skipped=skipped))
  assert (len(records), skipped) == (good, {reason: 1})


def _truncate(path):
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 3])


def test_truncated_image_fails_when_decoded_naming_image_and_line(tree):
  result = cmplaces.scan(tree.root, "nat", "val", 3)
  bad = result.entries[1]
  _truncate(tree.root / bad.relpath)
  result = cmplaces.scan(tree.root, "nat", "val", 3)  # the header still reads
  assert result.count == 3
  records = cmplaces.iter_records(tree.root, "nat", "val", tree.categories, IMAGE_SIZE,
                                  scan_result=result)
  expected = f"{result.label_file}, line {bad.line}: cannot decode image {bad.path}"
  with pytest.raises(DataError, match=re.escape(expected)):
    list(records)

  skipped = {"missing_file": 2}
  records = list(cmplaces.iter_records(tree.root, "nat", "val", tree.categories, IMAGE_SIZE,
                                       skip_bad=True, skipped=skipped, scan_result=result))
  assert len(records) == 2 and bad.relpath not in {r.example_id[8:] for r in records}
  assert skipped == {"missing_file": 2, "undecodable_image": 1}


def test_scan_result_counts_are_carried_into_skipped(tree):
  tree.append_line("ldr", "val", "ldr/abbey/gone.png 1")
  tree.append_line("ldr", "val", "ldr/abbey/gone_too.png 1")
  result = cmplaces.scan(tree.root, "ldr", "val", 3, skip_bad=True)
  skipped = {}
  records = list(cmplaces.iter_records(tree.root, "ldr", "val", tree.categories, IMAGE_SIZE,
                                       skip_bad=True, skipped=skipped, scan_result=result))
  assert (len(records), skipped) == (3, {"missing_file": 2})
  with pytest.raises(ValueError, match="scan_result is for ldr/val, not clp/val"):
    cmplaces.iter_records(tree.root, "clp", "val", tree.categories, IMAGE_SIZE,
                          scan_result=result)


def test_out_of_range_for_fewer_categories_raises_before_decoding(tree):
  result = cmplaces.scan(tree.root, "ldr", "val", 3)
  with pytest.raises(DataError, match=re.escape(f"{result.label_file}, line 3: label 2")):
    cmplaces.iter_records(tree.root, "ldr", "val", tree.categories[:2], IMAGE_SIZE,
                          scan_result=result)
