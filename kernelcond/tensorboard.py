"""TensorBoard scalar event files, written and read without TensorFlow or protobuf.

An event file is a sequence of TFRecords, each framed as

    uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)

(little-endian; `masked(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8 mod 2^32`, crc32c
being CRC-32 with the Castagnoli polynomial). Each record's data is a serialised
`tensorflow.Event` protocol buffer, of which this module writes the fields

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
              Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

The first record of a file carries `file_version = "brain.Event:2"`. The files are
named like TensorFlow 2's, `events.out.tfevents.<time>.<host>.<pid>.<n>`, created
exclusively (a writer never overwrites a file; n counts up past existing names).

    with SummaryWriter(workdir) as writer:
      writer.scalar("train/loss", 0.25, step=10)
      writer.scalars({"test/accuracy": 0.9, "test/loss": 0.3}, step=10)

    read_scalars(workdir)  # {'train/loss': [(10, 0.25)], ...}
"""

from __future__ import annotations

import os
import socket
import struct
import time
from typing import Iterator, Mapping, Optional

FILE_VERSION = "brain.Event:2"
_CASTAGNOLI_REVERSED = 0x82F63B78
_MASK_DELTA = 0xA282EAD8
_UINT32 = 0xFFFFFFFF
_UINT64 = 0xFFFFFFFFFFFFFFFF

# Protocol buffer wire types.
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


# --------------------------------------------------------------------------- crc32c


def _crc32c_table() -> tuple[int, ...]:
  """CRC of each byte value, bit-reflected Castagnoli polynomial."""
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ _CASTAGNOLI_REVERSED if crc & 1 else crc >> 1
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
  """CRC-32C (Castagnoli) of `data`, continuing from `crc` (0 to start).

  `crc32c(b"123456789") == 0xE3069283`.
  """
  crc ^= _UINT32
  table = _CRC32C_TABLE
  for byte in data:
    crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ _UINT32


def masked_crc32c(data: bytes) -> int:
  """The masked CRC that TFRecord frames store (rotate right 15, add a constant)."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _UINT32


def frame_record(data: bytes) -> bytes:
  """One TFRecord: length, masked CRC of the length, data, masked CRC of the data."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


# --------------------------------------------------------------------------- protobuf encoding


def _varint(value: int) -> bytes:
  """Base-128 varint; negative values as 64-bit two's complement (10 bytes)."""
  value &= _UINT64
  out = bytearray()
  while True:
    low = value & 0x7F
    value >>= 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
  return _varint(field << 3 | wire_type)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return _key(field, _BYTES) + _varint(len(payload)) + payload


def encode_summary_value(tag: str, value: float) -> bytes:
  """A `Summary.Value` with `tag` and `simple_value` (float32)."""
  return (_length_delimited(1, tag.encode("utf-8"))
          + _key(2, _FIXED32) + struct.pack("<f", float(value)))


def encode_event(wall_time: float, step: int = 0, *, file_version: Optional[str] = None,
                 scalars: Optional[Mapping[str, float]] = None) -> bytes:
  """A serialised `Event` with the given fields (a zero step is left implicit).

  Args:
    wall_time: seconds since the epoch.
    step: the global step (int64).
    file_version: e.g. `FILE_VERSION`, for the first record of a file.
    scalars: tag -> value, written as one `Summary` with one value per tag.
  """
  out = _key(1, _FIXED64) + struct.pack("<d", float(wall_time))
  if step:
    out += _key(2, _VARINT) + _varint(int(step))
  if file_version is not None:
    out += _length_delimited(3, file_version.encode("utf-8"))
  if scalars:
    summary = b"".join(_length_delimited(1, encode_summary_value(tag, value))
                       for tag, value in scalars.items())
    out += _length_delimited(5, summary)
  return out


# --------------------------------------------------------------------------- reading


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
  result = shift = 0
  while True:
    if pos >= len(data):
      raise ValueError("truncated varint")
    byte = data[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, object]]:
  """(field number, wire type, value) of a serialised message; bytes for wire type 2."""
  pos = 0
  while pos < len(data):
    key, pos = _read_varint(data, pos)
    field, wire_type = key >> 3, key & 7
    if wire_type == _VARINT:
      value, pos = _read_varint(data, pos)
    elif wire_type == _FIXED64:
      value, pos = data[pos:pos + 8], pos + 8
    elif wire_type == _BYTES:
      size, pos = _read_varint(data, pos)
      value, pos = data[pos:pos + size], pos + size
    elif wire_type == _FIXED32:
      value, pos = data[pos:pos + 4], pos + 4
    else:
      raise ValueError(f"unsupported protobuf wire type {wire_type}")
    if pos > len(data):
      raise ValueError("truncated protobuf field")
    yield field, wire_type, value


def decode_event(data: bytes) -> dict:
  """The fields of a serialised `Event` that this module writes.

  Returns:
    `{'wall_time': float, 'step': int, 'file_version': str | None,
    'scalars': [(tag, value), ...]}`; other fields and value kinds are skipped.
  """
  event = {"wall_time": 0.0, "step": 0, "file_version": None, "scalars": []}
  for field, wire_type, value in _fields(data):
    if field == 1 and wire_type == _FIXED64:
      event["wall_time"] = struct.unpack("<d", value)[0]
    elif field == 2 and wire_type == _VARINT:
      event["step"] = value - (1 << 64) if value >> 63 else value
    elif field == 3 and wire_type == _BYTES:
      event["file_version"] = value.decode("utf-8")
    elif field == 5 and wire_type == _BYTES:
      for f, w, summary_value in _fields(value):
        if f != 1 or w != _BYTES:
          continue
        tag, simple = None, None
        for vf, vw, item in _fields(summary_value):
          if vf == 1 and vw == _BYTES:
            tag = item.decode("utf-8")
          elif vf == 2 and vw == _FIXED32:
            simple = struct.unpack("<f", item)[0]
        if tag is not None and simple is not None:
          event["scalars"].append((tag, simple))
  return event


def iter_records(path: str) -> Iterator[bytes]:
  """The data of each TFRecord in the file at `path`, CRCs checked.

  A truncated last record (a writer still busy) ends the iteration.

  Raises:
    ValueError: on a CRC mismatch.
  """
  with open(path, "rb") as f:
    while True:
      header = f.read(12)
      if len(header) < 12:
        return
      length_bytes, length_crc = header[:8], struct.unpack("<I", header[8:])[0]
      if masked_crc32c(length_bytes) != length_crc:
        raise ValueError(f"{path}: corrupt record length (CRC mismatch)")
      (length,) = struct.unpack("<Q", length_bytes)
      data = f.read(length)
      footer = f.read(4)
      if len(data) < length or len(footer) < 4:
        return
      if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
        raise ValueError(f"{path}: corrupt record data (CRC mismatch)")
      yield data


def is_events_file(name: str) -> bool:
  """Whether a file name is a TensorBoard event file (TensorBoard's own test)."""
  return "tfevents" in os.path.basename(name)


def read_scalars(path: str) -> dict[str, list[tuple[int, float]]]:
  """Scalars of an event file, or of all event files directly in a directory.

  Returns:
    tag -> [(step, value), ...] in file (name) and record order.
  """
  if os.path.isdir(path):
    files = sorted(os.path.join(path, n) for n in os.listdir(path) if is_events_file(n))
  else:
    files = [path]
  out: dict[str, list[tuple[int, float]]] = {}
  for file in files:
    for record in iter_records(file):
      event = decode_event(record)
      for tag, value in event["scalars"]:
        out.setdefault(tag, []).append((event["step"], value))
  return out


# --------------------------------------------------------------------------- writing


def _open_new_events_file(logdir: str, wall_time: float):
  """Creates `events.out.tfevents.<time>.<host>.<pid>.<n>` exclusively; (file, path)."""
  stem = f"events.out.tfevents.{int(wall_time):010d}.{socket.gethostname()}.{os.getpid()}"
  n = 0
  while True:
    path = os.path.join(logdir, f"{stem}.{n}")
    try:
      return open(path, "xb"), path
    except FileExistsError:
      n += 1


class SummaryWriter:
  """Appends scalar summaries to a new TensorBoard event file in `logdir`.

  Attributes:
    logdir: the directory (created if missing).
    path: the event file this writer owns.
  """

  def __init__(self, logdir: str):
    self.logdir = os.fspath(logdir)
    os.makedirs(self.logdir, exist_ok=True)
    now = time.time()
    self._file, self.path = _open_new_events_file(self.logdir, now)
    self._write(encode_event(now, file_version=FILE_VERSION))
    self.flush()

  @property
  def closed(self) -> bool:
    return self._file is None

  def _write(self, event: bytes) -> None:
    if self._file is None:
      raise ValueError(f"SummaryWriter for {self.path} is closed")
    self._file.write(frame_record(event))

  def scalar(self, tag: str, value: float, step: int, *,
             wall_time: Optional[float] = None) -> None:
    """Records `value` (stored as float32) under `tag` at `step`."""
    self.scalars({tag: value}, step, wall_time=wall_time)

  def scalars(self, values: Mapping[str, float], step: int, *,
              wall_time: Optional[float] = None) -> None:
    """Records several tags at one step, as one event."""
    values = {str(tag): float(value) for tag, value in values.items()}
    if not values:
      return
    if not all(values):
      raise ValueError("scalar tags must be non-empty")
    self._write(encode_event(time.time() if wall_time is None else wall_time, int(step),
                             scalars=values))

  def flush(self) -> None:
    """Pushes buffered records to the file (TensorBoard reads what is flushed)."""
    if self._file is not None:
      self._file.flush()

  def close(self) -> None:
    """Flushes and closes the file; later writes raise `ValueError`."""
    if self._file is not None:
      self._file.flush()
      self._file.close()
      self._file = None

  def __enter__(self) -> "SummaryWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
