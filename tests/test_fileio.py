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
