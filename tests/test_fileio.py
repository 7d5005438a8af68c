"""Atomic writes leave files as readable as open() would."""

import os
import stat

from cmp_tf import fileio


def test_atomic_write_has_the_umask_mode_not_0600(tmp_path):
  old = os.umask(0o022)
  try:
    path = tmp_path / "out.json"
    fileio.write_json_atomic(path, {"a": 1})
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
  assert path.read_text() == '{\n "a": 1\n}\n'
  assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
  path = tmp_path / "a.npz"
  path.write_bytes(b"old")
  try:
    with fileio.atomic_path(path) as tmp:
      assert tmp.endswith(".npz") and os.path.dirname(tmp) == str(tmp_path)
      open(tmp, "wb").write(b"half")
      raise RuntimeError("killed")
  except RuntimeError:
    pass
  assert path.read_bytes() == b"old"
  assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


def test_weights_files_keep_their_double_extension(tmp_path):
  with fileio.atomic_path(tmp_path / "final.weights.h5") as tmp:
    assert tmp.endswith(".weights.h5")
    open(tmp, "wb").write(b"w")
  assert (tmp_path / "final.weights.h5").read_bytes() == b"w"


def test_atomic_directory_replaces_a_directory_whole(tmp_path):
  target = tmp_path / "export" / "1"
  with fileio.atomic_directory(target) as tmp:
    open(os.path.join(tmp, "a"), "w").write("1")
  old = os.umask(0o022)
  os.umask(old)
  assert stat.S_IMODE(os.stat(target).st_mode) == 0o777 & ~old
  try:
    with fileio.atomic_directory(target) as tmp:
      open(os.path.join(tmp, "b"), "w").write("2")
      raise RuntimeError("killed")
  except RuntimeError:
    pass
  assert sorted(os.listdir(target)) == ["a"]  # the failed build left the old one
  with fileio.atomic_directory(target) as tmp:
    open(os.path.join(tmp, "b"), "w").write("2")
  assert sorted(os.listdir(target)) == ["b"]
  assert sorted(os.listdir(target.parent)) == ["1"]  # no temp or old directory left
