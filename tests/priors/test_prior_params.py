"""save_prior / load_prior: lossless, pickle-free, atomic, and strict about bad files."""

import json

import numpy as np
import pytest

from cmp_tf.priors import PriorParams, fit_gaussian, fit_gmm, load_prior, save_prior


@pytest.fixture(name="priors")
def fixture_priors():
  x = np.random.default_rng(0).standard_normal((120, 5))
  return [fit_gaussian(x, layer="pool5"), fit_gmm(x, layer="fc7", num_components=3)]


def test_round_trip(tmp_path, priors):
  for params in priors:
    path = save_prior(tmp_path / "sub" / f"{params.layer}.npz", params)
    back = load_prior(path)
    assert (back.kind, back.layer, back.settings) == (params.kind, params.layer,
                                                      params.settings)
    assert sorted(back.arrays) == sorted(params.arrays)
    for name, value in params.arrays.items():
      np.testing.assert_array_equal(back.arrays[name], value)
    assert back == params
  assert priors[0] != priors[1]
  assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["fc7.npz", "pool5.npz"]


def test_file_loads_without_pickle(tmp_path, priors):
  path = save_prior(tmp_path / "p.npz", priors[1])
  with np.load(path, allow_pickle=False) as data:
    assert str(data["kind"]) == "gmm" and str(data["layer"]) == "fc7"
    assert json.loads(str(data["settings"]))["num_components"] == 3
    assert data["array_means"].shape == (3, 5)


def test_bad_files_fail_clearly(tmp_path, priors):
  with pytest.raises(FileNotFoundError, match="missing.npz"):
    load_prior(tmp_path / "missing.npz")
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="junk.npz"):
    load_prior(tmp_path / "junk.npz")
  np.savez(tmp_path / "other.npz", a=np.zeros(3))
  with pytest.raises(ValueError, match="missing entry 'format_version'"):
    load_prior(tmp_path / "other.npz")
  arrays = dict(priors[1].arrays)
  arrays["means"] = arrays["means"][:, :2]
  with pytest.raises(ValueError, match="must be"):
    PriorParams("gmm", "fc7", arrays)
  with pytest.raises(ValueError, match="no fitted arrays"):
    save_prior(tmp_path / "u.npz", PriorParams.unfitted("gmm", "fc7", 5, 3))
