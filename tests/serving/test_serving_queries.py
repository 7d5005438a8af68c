"""Query parsing: layouts, files and texts, with errors that name the flag."""

import io

import numpy as np
import pytest
from PIL import Image

from cmp_tf import modalities as mod_lib
from cmp_tf.serving import queries


def test_layout_items_parse_with_underscores_as_spaces():
  assert queries.parse_layout("sky@0.5,0.1 coffee_table@0.2,0.6  car@1,0") == [
      ("sky", 0.5, 0.1), ("coffee table", 0.2, 0.6), ("car", 1.0, 0.0)]


@pytest.mark.parametrize("layout, message", [
    ("", "empty layout"),
    ("sky", r"item 1 'sky': expected WORD@X,Y"),
    ("sky@0.5,0.1 tree@0.2", r"item 2 'tree@0.2': expected two numbers X,Y"),
    ("@0.5,0.5", "the word before '@' is empty"),
    ("car@0.5,1.5", r"X and Y must lie in \[0, 1\]"),
    ("car@nan,0.5", r"X and Y must lie in \[0, 1\]"),
    ("car@a,b", "expected two numbers"),
])
def test_unparsable_layouts_name_the_flag_and_item(layout, message):
  with pytest.raises(ValueError, match="^--spatial_text: .*" + message):
    queries.parse_layout(layout)


def test_spatial_text_query_is_rendered_at_the_model_size():
  query = queries.make_query("spatial_text", "sky@0.5,0.1 tree@0.2,0.6 car@0.7,0.8", 32)
  assert query.modality == mod_lib.SPT
  with Image.open(io.BytesIO(query.encoded)) as image:
    assert image.size == (32, 32)
    pixels = np.asarray(image.convert("L"))
  assert pixels.min() < 128 < pixels.max()  # dark words on a white page
  with Image.open(io.BytesIO(query.display)) as image:
    assert image.size == (queries.DISPLAY_SIZE,) * 2


def test_image_queries_need_a_readable_file(tmp_path):
  with pytest.raises(ValueError, match="^--sketch: no such file"):
    queries.make_query("sketch", str(tmp_path / "missing.png"), 32)
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"not an image")
  with pytest.raises(ValueError, match="^--clipart: .*bad.png is not a readable image"):
    queries.make_query("clipart", str(bad), 32)
  good = tmp_path / "good.png"
  Image.new("RGB", (40, 20), (10, 200, 30)).save(good)
  query = queries.make_query("sketch", str(good), 32)
  assert query.modality == mod_lib.LDR and query.encoded == good.read_bytes()


@pytest.mark.parametrize("text", ["", "   ", "?!...", None])
def test_text_queries_need_a_sentence(text):
  with pytest.raises(ValueError, match="^--text: the description has no sentence"):
    queries.make_query("text", text, 32)


def test_unknown_query_kind():
  with pytest.raises(ValueError, match="unknown query kind 'video'"):
    queries.make_query("video", "x", 32)


def test_layout_words_are_checked_against_the_training_vocabulary():
  vocabulary = queries.spatial_text_vocabulary({"source": "synthcmp"})
  assert {"bed", "sky", "tree"} <= set(vocabulary)
  assert queries.spatial_text_vocabulary({"source": "cmplaces"}) is None  # unknown: any word
  queries.make_query("spatial_text", "bed@0.5,0.5 sky@0.5,0.1", 32, vocabulary)
  with pytest.raises(ValueError, match=r"^--spatial_text: .*'trea': did you mean 'tree'"):
    queries.make_query("spatial_text", "trea@0.2,0.6 sky@0.5,0.1", 32, vocabulary)
