"""Photo search on the tiny run: index build, every query kind, both backends, bad queries."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cmp_tf import finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import embedders, queries, search
from cmp_tf.serving import index as index_lib

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(exported_run):
  run_dir, _ = exported_run
  meta = search.build_search_index(run_dir, progress=False)
  return run_dir, meta


def _query(kind, value):
  return queries.make_query(kind, value, 32)


def test_build_indexes_the_nat_validation_split(built, val_records):
  run_dir, meta = built
  assert meta["count"] == len(val_records[mod_lib.NAT])
  assert meta["kind"] == "flat" and meta["backend"].startswith("exported SavedModels")
  loaded = index_lib.PhotoIndex.load(os.path.join(run_dir, "search"))
  assert loaded.ids == [r.example_id for r in val_records[mod_lib.NAT]]
  assert loaded.categories == [r.category for r in val_records[mod_lib.NAT]]
  assert loaded.labels.tolist() == [r.label for r in val_records[mod_lib.NAT]]
  with Image.open(io.BytesIO(loaded.thumbnails[0])) as thumb:
    assert max(thumb.size) <= search.DEFAULT_THUMB_SIZE


def test_two_workers_build_the_index_one_builds(built, val_records, tmp_path):
  run_dir, meta = built
  assert meta["runner"] == {"runner": "DirectRunner", "workers": 1}
  one = index_lib.PhotoIndex.load(os.path.join(run_dir, "search"))
  two_meta = search.build_search_index(run_dir, index_dir=str(tmp_path / "two"), workers=2,
                                       progress=False)
  assert two_meta["runner"] == {"runner": "DirectRunner", "workers": 2}
  two = index_lib.PhotoIndex.load(str(tmp_path / "two"))
  assert two.ids == one.ids and two.thumbnails == one.thumbnails
  assert two.labels.tolist() == one.labels.tolist()
  # The same scores in the same order; and the scores of the model itself.
  info_embedder, _ = embedders.make_embedder(finished_run.load_run(run_dir), [mod_lib.NAT],
                                             embedders.AUTO)
  photos = [r.image_png for r in val_records[mod_lib.NAT]]
  direct = info_embedder.images(mod_lib.NAT, photos)["embedding"]
  scores_one, order_one = one.search(direct[:5], k=len(one))
  scores_two, order_two = two.search(direct[:5], k=len(two))
  np.testing.assert_array_equal(order_one, order_two)
  np.testing.assert_array_equal(scores_one, scores_two)
  np.testing.assert_allclose(scores_one[:, 0], 1.0, atol=1e-4)
  assert not [p for p in os.listdir(tmp_path) if "embedding" in p]


def test_a_photo_finds_itself_first(built, val_records, write_png):
  run_dir, _ = built
  record = val_records[mod_lib.NAT][3]
  result = search.search_photos(run_dir, _query("photo", write_png(record.image_png)), k=3)
  assert result["hits"][0]["id"] == record.example_id
  assert result["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("kind, modality", [("sketch", mod_lib.LDR), ("clipart", mod_lib.CLP)])
def test_image_queries(built, val_records, write_png, kind, modality, tmp_path):
  run_dir, meta = built
  out = str(tmp_path / f"{kind}.png")
  record = val_records[modality][0]
  result = search.search_photos(run_dir, _query(kind, write_png(record.image_png)), k=5, out=out)
  assert [h["rank"] for h in result["hits"]] == [1, 2, 3, 4, 5]
  scores = [h["score"] for h in result["hits"]]
  assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
  assert result["backend"].startswith("exported SavedModels") and f"/{modality}/" in result[
      "backend"]
  with Image.open(out) as sheet:
    assert sheet.width > 6 * 100  # the query and five hits side by side


def test_spatial_text_and_text_queries_match_the_keras_backend(built):
  run_dir, _ = built
  for kind, value in (("spatial_text", "bed@0.5,0.6 lamp@0.2,0.3 window@0.8,0.2"),
                      ("text", "A bedroom with a large bed. A lamp stands near the window.")):
    served = search.search_photos(run_dir, _query(kind, value), k=24)
    local = search.search_photos(run_dir, _query(kind, value), k=24, backend=embedders.KERAS)
    assert local["backend"].startswith("the Keras model")
    np.testing.assert_allclose([h["score"] for h in served["hits"]],
                               [h["score"] for h in local["hits"]], atol=1e-3)
    assert served["predicted"] == local["predicted"]


def test_an_ivf_index_and_a_folder_of_images(exported_run, val_records, tmp_path):
  run_dir, _ = exported_run
  folder = tmp_path / "photos"
  for record in val_records[mod_lib.NAT][:10]:
    os.makedirs(folder / record.category, exist_ok=True)
    (folder / record.category / f"{record.example_id.replace('/', '_')}.png").write_bytes(
        record.image_png)
  (folder / "loose.jpg").write_bytes(_jpeg(val_records[mod_lib.NAT][11].image_png))
  index_dir = str(tmp_path / "index")
  meta = search.build_search_index(run_dir, images=str(folder), kind="ivf", index_dir=index_dir,
                                   backend=embedders.KERAS, progress=False)
  assert meta["count"] == 11 and meta["kind"] == "ivf" and meta["nlist"] == 1
  loaded = index_lib.PhotoIndex.load(index_dir)
  labels = dict(zip(loaded.ids, zip(loaded.categories, loaded.labels.tolist())))
  assert labels.pop("loose.jpg") == ("", -1)
  expected = {f"{r.category}/{r.example_id.replace('/', '_')}.png": (r.category, r.label)
              for r in val_records[mod_lib.NAT][:10]}
  assert labels == expected
  result = search.search_photos(run_dir, _query("spatial_text", "bed@0.5,0.5"), k=20,
                                index_dir=index_dir)
  assert len(result["hits"]) == 11


def _jpeg(png):
  with Image.open(io.BytesIO(png)) as image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG")
  return buffer.getvalue()


def test_bad_builds_and_queries(built, tmp_path):
  run_dir, _ = built
  with pytest.raises(ValueError, match="--k must be a positive integer"):
    search.search_photos(run_dir, _query("text", "A kitchen."), k=0)
  with pytest.raises(ValueError, match="--images: .*does not exist"):
    search.build_search_index(run_dir, images=str(tmp_path / "missing"), progress=False)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="--images: .*holds no photo"):
    search.build_search_index(run_dir, images=str(empty), index_dir=str(tmp_path / "i"),
                              progress=False)
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  with pytest.raises(ValueError, match="a.png: not a readable image"):
    search.build_search_index(run_dir, images=str(broken), index_dir=str(tmp_path / "i"),
                              progress=False)
  with pytest.raises(ValueError, match="no photo index"):
    search.search_photos(run_dir, _query("text", "A kitchen."), index_dir=str(tmp_path / "i"))


def test_query_cli(built, tmp_path):
  run_dir, _ = built
  out = str(tmp_path / "sheet.png")
  command = [sys.executable, "-m", "cmp_tf.search", "query", f"--run_dir={run_dir}",
             "--spatial_text=bed@0.5,0.6 lamp@0.2,0.3", "--k=4", f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "top 4 of 24 photos" in result.stdout and os.path.isfile(out)
  assert "embedded with exported SavedModels" in result.stdout
  bad = subprocess.run(command[:5] + ["--spatial_text=bed@0.5", "--k=4"], capture_output=True,
                       text=True, timeout=600)
  assert bad.returncode == 2
  assert "--spatial_text: item 1 'bed@0.5': expected two numbers X,Y" in bad.stderr
  unknown = subprocess.run(command[:5] + ["--spatial_text=bedd@0.5,0.5 lamp@0.2,0.3"],
                           capture_output=True, text=True, timeout=600)
  assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
  assert "never saw these words drawn: 'bedd': did you mean 'bed'" in unknown.stderr
  nested = tmp_path / "new" / "folder" / "sheet.png"
  allowed = subprocess.run(command[:5] + ["--spatial_text=bedd@0.5,0.5", "--allow_unknown_words",
                                          f"--out={nested}"],
                           capture_output=True, text=True, timeout=600)
  assert allowed.returncode == 0, allowed.stderr[-3000:]
  assert f"(created the folder {nested.parent} for it)" in allowed.stdout
