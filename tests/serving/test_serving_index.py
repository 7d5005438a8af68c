"""PhotoIndex: exact and IVF search against brute force, files on disk, consistency checks."""

import json
import os

import numpy as np
import pytest

from cmp_tf.serving import index as index_lib


def _collection(n=200, dim=16, seed=0):
  rng = np.random.default_rng(seed)
  vectors = rng.normal(0, 1, (n, dim)).astype(np.float32)
  ids = [f"photo/{i:04d}" for i in range(n)]
  labels = [i % 5 for i in range(n)]
  categories = [f"cat{i % 5}" for i in range(n)]
  thumbs = [bytes([i % 256]) * (1 + i % 7) for i in range(n)]
  return vectors, ids, labels, categories, thumbs


def _brute_force(vectors, queries, k):
  unit = index_lib.normalise(vectors)
  scores = index_lib.normalise(queries) @ unit.T
  return np.argsort(-scores, axis=1, kind="stable")[:, :k], np.sort(scores, axis=1)[:, ::-1][:, :k]


def test_flat_index_is_exact_cosine_search(tmp_path):
  vectors, ids, labels, categories, thumbs = _collection()
  built = index_lib.PhotoIndex.build(vectors * 3.0, ids, labels, categories, thumbs,
                                     meta={"source": "test"})
  queries = np.random.default_rng(1).normal(0, 1, (4, 16)).astype(np.float32)
  scores, positions = built.search(queries, 10)
  expected_positions, expected_scores = _brute_force(vectors, queries, 10)
  np.testing.assert_array_equal(positions, expected_positions)
  np.testing.assert_allclose(scores, expected_scores, atol=1e-5)

  built.save(str(tmp_path))
  loaded = index_lib.PhotoIndex.load(str(tmp_path))
  assert loaded.ids == ids and loaded.categories == categories
  assert loaded.labels.tolist() == labels and loaded.thumbnails == thumbs
  assert loaded.meta["source"] == "test" and loaded.meta["kind"] == "flat"
  hits = loaded.hits(queries[0], 3)
  assert [h["position"] for h in hits] == expected_positions[0, :3].tolist()
  assert [h["rank"] for h in hits] == [1, 2, 3]
  assert hits[0]["id"] == ids[hits[0]["position"]]
  assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp") or ".tmp." in n]


def test_ivf_finds_the_exact_neighbours_when_probing_every_cell(tmp_path):
  vectors, ids, labels, categories, thumbs = _collection(n=400)
  built = index_lib.PhotoIndex.build(vectors, ids, labels, categories, thumbs, kind="ivf")
  nlist = built.meta["nlist"]
  assert nlist == index_lib.default_nlist(400) == 10
  built.save(str(tmp_path))
  loaded = index_lib.PhotoIndex.load(str(tmp_path))
  assert loaded.index.nprobe == built.meta["nprobe"] == 8
  queries = vectors[:5] + 0.01
  _, positions = loaded.search(queries, 5, nprobe=nlist)
  expected, _ = _brute_force(vectors, queries, 5)
  np.testing.assert_array_equal(positions, expected)
  with pytest.raises(ValueError, match=r"--nprobe must be in \[1, 10\]"):
    loaded.search(queries, 5, nprobe=11)


def test_k_larger_than_the_collection_returns_everything():
  vectors, ids, labels, categories, thumbs = _collection(n=6)
  built = index_lib.PhotoIndex.build(vectors, ids, labels, categories, thumbs)
  assert len(built.hits(vectors[0], 50)) == 6


def test_bad_searches_and_builds_are_named():
  vectors, ids, labels, categories, thumbs = _collection(n=20)
  built = index_lib.PhotoIndex.build(vectors, ids, labels, categories, thumbs)
  with pytest.raises(ValueError, match="--k must be >= 1"):
    built.search(vectors[:1], 0)
  with pytest.raises(ValueError, match="--nprobe applies to an IVF index only"):
    built.search(vectors[:1], 3, nprobe=2)
  with pytest.raises(ValueError, match="query embeddings have 8 values"):
    built.search(np.ones((1, 8), np.float32), 3)
  with pytest.raises(ValueError, match="--index: unknown index kind 'hnsw'"):
    index_lib.PhotoIndex.build(vectors, ids, labels, categories, thumbs, kind="hnsw")
  with pytest.raises(ValueError, match=r"--nlist must be in \[1, 20\]"):
    index_lib.PhotoIndex.build(vectors, ids, labels, categories, thumbs, kind="ivf", nlist=21)
  with pytest.raises(ValueError, match="19 ids for 20 embeddings"):
    index_lib.PhotoIndex.build(vectors, ids[:-1], labels, categories, thumbs)


def test_missing_or_mixed_files_are_refused(tmp_path):
  with pytest.raises(index_lib.PhotoIndexError, match="no photo index .*cmp_tf.search build"):
    index_lib.PhotoIndex.load(str(tmp_path))
  vectors, ids, labels, categories, thumbs = _collection(n=30)
  index_lib.PhotoIndex.build(vectors, ids, labels, categories, thumbs).save(str(tmp_path))
  meta_path = tmp_path / index_lib.INDEX_JSON
  meta = json.loads(meta_path.read_text())
  meta["build_id"] = "another build"
  meta_path.write_text(json.dumps(meta))
  with pytest.raises(index_lib.PhotoIndexError, match="different builds"):
    index_lib.PhotoIndex.load(str(tmp_path))


def test_default_nlist_keeps_enough_points_per_cell():
  assert index_lib.default_nlist(10) == 1
  assert index_lib.default_nlist(39 * 50) == 50
  assert index_lib.default_nlist(1_000_000) == 4000
