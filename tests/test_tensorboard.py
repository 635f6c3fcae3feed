"""Event files: crc32c vectors, record framing, our reader and TensorBoard's own."""

import os
import struct

import numpy as np
import pytest

from kernelcond import tensorboard as tb


def test_crc32c_known_vectors():
  assert tb.crc32c(b"") == 0
  assert tb.crc32c(b"123456789") == 0xE3069283
  # RFC 3720 (iSCSI), appendix B.4.
  assert tb.crc32c(bytes(32)) == 0x8A9136AA
  assert tb.crc32c(b"\xff" * 32) == 0x62A8AB43
  assert tb.crc32c(bytes(range(32))) == 0x46DD794E
  assert tb.crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
  # Continuation: the CRC of a concatenation from the CRC of its prefix.
  assert tb.crc32c(b"56789", tb.crc32c(b"1234")) == 0xE3069283


def test_record_framing():
  data = b"hello event"
  record = tb.frame_record(data)
  assert len(record) == 8 + 4 + len(data) + 4
  assert struct.unpack("<Q", record[:8])[0] == len(data)
  crc = tb.crc32c(record[:8])
  masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
  assert struct.unpack("<I", record[8:12])[0] == masked
  assert record[12:-4] == data
  assert struct.unpack("<I", record[-4:])[0] == tb.masked_crc32c(data)


def test_event_encoding_round_trips_including_negative_steps():
  data = tb.encode_event(12.5, -3, scalars={"a/b": 0.25, "c": -1.5})
  event = tb.decode_event(data)
  assert event == {"wall_time": 12.5, "step": -3, "file_version": None,
                   "scalars": [("a/b", 0.25), ("c", -1.5)]}
  # Hand-checked bytes of the simplest event: wall_time 1.0, step 2.
  assert tb.encode_event(1.0, 2) == b"\x09" + struct.pack("<d", 1.0) + b"\x10\x02"


def _write_run(logdir):
  with tb.SummaryWriter(logdir) as writer:
    for step in range(5):
      writer.scalar("train/loss", 1.0 / (step + 1), step)
    writer.scalars({"test/accuracy": 0.75, "test/loss": np.float32(0.5)}, step=4)
    writer.flush()
  return writer.path


def test_writer_and_reader_round_trip(tmp_path):
  path = _write_run(str(tmp_path))
  assert os.path.basename(path).startswith("events.out.tfevents.")
  records = [tb.decode_event(r) for r in tb.iter_records(path)]
  assert records[0]["file_version"] == "brain.Event:2" and not records[0]["scalars"]
  scalars = tb.read_scalars(str(tmp_path))
  assert sorted(scalars) == ["test/accuracy", "test/loss", "train/loss"]
  assert [s for s, _ in scalars["train/loss"]] == [0, 1, 2, 3, 4]
  np.testing.assert_allclose([v for _, v in scalars["train/loss"]], 1.0 / np.arange(1, 6),
                             rtol=1e-6)
  assert scalars["test/accuracy"] == [(4, 0.75)] and scalars["test/loss"] == [(4, 0.5)]


def test_writers_never_share_or_overwrite_a_file(tmp_path):
  first = tb.SummaryWriter(str(tmp_path))
  second = tb.SummaryWriter(str(tmp_path))
  assert first.path != second.path
  first.scalar("x", 1.0, 1)
  second.scalar("x", 2.0, 2)
  first.close()
  second.close()
  assert first.closed
  with pytest.raises(ValueError, match="closed"):
    first.scalar("x", 3.0, 3)
  assert tb.read_scalars(first.path) == {"x": [(1, 1.0)]}
  assert tb.read_scalars(second.path) == {"x": [(2, 2.0)]}


def test_reader_detects_corruption_and_tolerates_a_truncated_tail(tmp_path):
  path = _write_run(str(tmp_path))
  raw = open(path, "rb").read()
  truncated = tmp_path / "events.out.tfevents.truncated"
  truncated.write_bytes(raw[:-3])
  assert len(list(tb.iter_records(str(truncated)))) == len(list(tb.iter_records(path))) - 1
  corrupt = bytearray(raw)
  corrupt[-6] ^= 0xFF  # inside the last record's data
  bad = tmp_path / "bad.tfevents"
  bad.write_bytes(bytes(corrupt))
  with pytest.raises(ValueError, match="CRC"):
    list(tb.iter_records(str(bad)))


def test_tensorboard_event_accumulator_reads_our_file(tmp_path):
  pytest.importorskip("tensorboard")
  from tensorboard.backend.event_processing import event_accumulator

  path = _write_run(str(tmp_path))
  acc = event_accumulator.EventAccumulator(path)
  acc.Reload()
  assert sorted(acc.Tags()["scalars"]) == ["test/accuracy", "test/loss", "train/loss"]
  events = acc.Scalars("train/loss")
  assert [e.step for e in events] == [0, 1, 2, 3, 4]
  np.testing.assert_allclose([e.value for e in events], 1.0 / np.arange(1, 6), rtol=1e-6)
  assert [(e.step, e.value) for e in acc.Scalars("test/accuracy")] == [(4, 0.75)]
  assert [(e.step, e.value) for e in acc.Scalars("test/loss")] == [(4, 0.5)]
  # TensorBoard checks the CRCs: it drops the last record once we corrupt its data,
  # so the records it accepted above carry CRCs computed the same way as its own.
  raw = bytearray(open(path, "rb").read())
  raw[-6] ^= 0xFF
  corrupt = tmp_path / "corrupt" / os.path.basename(path)
  corrupt.parent.mkdir()
  corrupt.write_bytes(bytes(raw))
  acc = event_accumulator.EventAccumulator(str(corrupt))
  acc.Reload()
  assert sorted(acc.Tags()["scalars"]) == ["train/loss"]
