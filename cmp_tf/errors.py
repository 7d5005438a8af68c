"""The one error type for bad dataset input, always naming where it was found."""


class DataError(ValueError):
  """Bad input data: the message names the file and the line or record."""

  def __init__(self, message, path=None, line=None, record=None):
    where = []
    if path is not None:
      where.append(str(path))
    if line is not None:
      where.append(f"line {line}")
    if record is not None:
      where.append(f"record {record}")
    prefix = ", ".join(where)
    super().__init__(f"{prefix}: {message}" if prefix else message)
    self.path, self.line, self.record = path, line, record
