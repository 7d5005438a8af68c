"""Embedders: inputs of any modality -> the shared space's retrieval embedding (normalised fc7).

Two backends compute the same numbers:
  saved_model  the run's exported SavedModels (DIR/export/<modality>/<newest>/), called
               through their signatures, as a TF Serving deployment would
  keras        the trained Keras model (final.weights.h5) with `features.decode_image`
               and the dataset's Python sentence encoder
"auto" takes the exports when every needed one exists and holds the run's current
weights, and the Keras model otherwise.
"""

import numpy as np

from cmp_tf import finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import signatures

SAVED_MODEL = "saved_model"
KERAS = "keras"
AUTO = "auto"
BACKENDS = (AUTO, SAVED_MODEL, KERAS)
_BATCH = 128


def _decode_outputs(outputs):
  """Signature/keras outputs -> {"embedding", "probabilities", "category"} as numpy/str."""
  return {
      "embedding": np.asarray(outputs["embedding"], np.float32),
      "probabilities": np.asarray(outputs["probabilities"], np.float32),
      "category": [c.decode("utf-8") if isinstance(c, bytes) else str(c)
                   for c in np.asarray(outputs["category"]).tolist()],
  }


def _concat(parts):
  if not parts:
    return {"embedding": np.zeros((0, 0), np.float32), "probabilities": np.zeros((0, 0)),
            "category": []}
  return {"embedding": np.concatenate([p["embedding"] for p in parts]),
          "probabilities": np.concatenate([p["probabilities"] for p in parts]),
          "category": [c for p in parts for c in p["category"]]}


class Embedder:
  """Batched embedding of encoded images, descriptions and sentence vectors."""

  backend = None

  def images(self, modality, encoded):
    """A list of encoded image bytes of an image modality -> outputs dict."""
    if not mod_lib.is_image(modality):
      raise ValueError(f"{modality} is not an image modality")
    return _concat([self._images(modality, list(encoded[i:i + _BATCH]))
                    for i in range(0, len(encoded), _BATCH)])

  def texts(self, descriptions):
    """A list of DSC descriptions (raw text) -> outputs dict."""
    return _concat([self._texts(list(descriptions[i:i + _BATCH]))
                    for i in range(0, len(descriptions), _BATCH)])

  def vectors(self, vectors):
    """DSC sentence vectors [N, D] (as stored in the dataset) -> outputs dict."""
    vectors = np.asarray(vectors, np.float32)
    return _concat([self._vectors(vectors[i:i + _BATCH])
                    for i in range(0, len(vectors), _BATCH)])


class SavedModelEmbedder(Embedder):
  """Calls the exported SavedModels' signatures."""

  backend = SAVED_MODEL

  def __init__(self, version_dirs):
    """`version_dirs`: {modality: DIR/export/<modality>/<version>}."""
    self.version_dirs = dict(version_dirs)
    self._loaded = {}

  def _signature(self, modality, name):
    import tensorflow as tf

    if modality not in self.version_dirs:
      raise ValueError(f"no exported {modality.upper()} model")
    if modality not in self._loaded:
      if modality == mod_lib.DSC:
        import tensorflow_text  # noqa: F401 - registers the tokenizer ops
      self._loaded[modality] = tf.saved_model.load(self.version_dirs[modality])
    return self._loaded[modality].signatures[name]

  def _images(self, modality, encoded):
    import tensorflow as tf

    fn = self._signature(modality, signatures.SERVING_DEFAULT)
    return _decode_outputs(fn(**{signatures.IMAGES: tf.constant(encoded, tf.string)}))

  def _texts(self, descriptions):
    import tensorflow as tf

    fn = self._signature(mod_lib.DSC, signatures.SERVING_DEFAULT)
    if signatures.DESCRIPTIONS not in fn.structured_input_signature[1]:
      raise ValueError("the exported DSC model takes sentence vectors only (see "
                       "raw_text_input in its assets.extra/cmp_tf.json)")
    return _decode_outputs(fn(**{signatures.DESCRIPTIONS: tf.constant(descriptions, tf.string)}))

  def _vectors(self, vectors):
    import tensorflow as tf

    fn = self._signature(mod_lib.DSC, signatures.SERVE_VECTORS)
    return _decode_outputs(fn(**{signatures.VECTORS: tf.constant(vectors)}))


class KerasEmbedder(Embedder):
  """Runs the trained Keras model in this process."""

  backend = KERAS

  def __init__(self, info):
    """`info`: the FinishedRun (cmp_tf.finished_run) whose model to run."""
    self.info = info
    self._functions = {}
    self._encoder = None

  def _function(self, modality):
    import tensorflow as tf

    from cmp_tf.data import features
    from cmp_tf.models import cross_modal

    if modality not in self._functions:
      feature_model = cross_modal.feature_model(self.info.model, modality)
      categories = tf.constant(self.info.categories)
      size = self.info.spec.image_size

      def outputs(x):
        f = feature_model(x, training=False)
        return {"embedding": tf.math.l2_normalize(f["fc7"], axis=1),
                "probabilities": tf.nn.softmax(f["logits"], axis=1),
                "category": tf.gather(categories, tf.argmax(f["logits"], axis=1))}

      if mod_lib.is_image(modality):
        def run(encoded):
          x = tf.map_fn(lambda e: features.decode_image(e, size), encoded,
                        fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
          return outputs(x)
      else:
        run = outputs
      self._functions[modality] = tf.function(run, reduce_retracing=True)
    return self._functions[modality]

  def _images(self, modality, encoded):
    import tensorflow as tf

    return _decode_outputs(self._function(modality)(tf.constant(encoded, tf.string)))

  def _texts(self, descriptions):
    from cmp_tf.text import encoders

    if self._encoder is None:
      self._encoder = encoders.make_encoder(self.info.sentence_encoder)
    vectors = encoders.encode_descriptions(self._encoder, descriptions, where="query")
    return self._vectors(vectors)

  def _vectors(self, vectors):
    import tensorflow as tf

    return _decode_outputs(self._function(mod_lib.DSC)(tf.constant(vectors, tf.float32)))


def exported_version_dirs(info, modalities):
  """({modality: newest version dir}, problem or None) of the run's exports for `modalities`."""
  dirs = {}
  for modality in modalities:
    version_dir = info.latest_export_dir(modality)
    if version_dir is None:
      return None, (f"no exported {modality.upper()} model under "
                    f"{finished_run.export_root(info.run_dir)}")
    model_info = finished_run.read_model_info(version_dir)
    if model_info is None or model_info.get("fingerprint") != info.weights_digest:
      return None, (f"the exported {modality.upper()} model {version_dir} holds other "
                    "weights than the run's final.weights.h5 (export the run again)")
    dirs[modality] = version_dir
  return dirs, None


def make_embedder(info, modalities, backend=AUTO):
  """(Embedder, note) for `modalities` of the run; the note says which backend and why."""
  if backend not in BACKENDS:
    raise ValueError(f"--backend: unknown backend {backend!r}; expected one of "
                     f"{', '.join(BACKENDS)}")
  if backend in (AUTO, SAVED_MODEL):
    dirs, problem = exported_version_dirs(info, modalities)
    if dirs is not None:
      return SavedModelEmbedder(dirs), "exported SavedModels: " + ", ".join(
          sorted(set(dirs.values())))
    if backend == SAVED_MODEL:
      raise ValueError(f"--backend=saved_model: {problem}")
    return KerasEmbedder(info), f"the Keras model of {info.run_dir} ({problem})"
  return KerasEmbedder(info), f"the Keras model of {info.run_dir}"
