r"""TFRecord files and ``tf.train.Example`` records without TensorFlow (for BAIR, Sec. 4).

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little-endian) | uint32 masked CRC32C of the 8 length bytes
    payload (length bytes)        | uint32 masked CRC32C of the payload

CRC32C is the Castagnoli CRC (reflected polynomial 0x82F63B78); the stored "masked" value is
``((crc >> 15) | (crc << 17)) + 0xA282EAD8`` modulo 2^32 (:func:`masked_crc32c`). The CRC comes
from ``google_crc32c`` when it is installed, otherwise from a pure-Python table (same values,
about 100 times slower).

Corrupt data is never returned silently (downloads arrive truncated; pitfalls, "Data"):
:func:`iter_records` either raises :class:`CorruptRecord` or skips the record and reports it
("FILE @ OFFSET: reason"). A wrong length CRC, or a record cut off at the end of the file, ends
the file (nothing after it can be framed); a wrong payload CRC skips only that record.

:func:`parse_example` is a minimal protobuf wire-format parser for ``tf.train.Example``;
:func:`encode_example` and :func:`write_records` are the inverse (test fixtures, small exports).

References:
    | TFRecord format: https://www.tensorflow.org/tutorials/load_data/tfrecord
    | Protocol buffers encoding: https://protobuf.dev/programming-guides/encoding/
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

try:
    import google_crc32c
except ImportError:  # pragma: no cover - depends on the environment
    google_crc32c = None

__all__ = [
    "CorruptRecord",
    "Feature",
    "Record",
    "count_records",
    "crc32c",
    "encode_example",
    "iter_records",
    "masked_crc32c",
    "parse_example",
    "write_records",
]

Feature = list[bytes] | np.ndarray  # bytes_list, or float32 / int64 values

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")  # length, masked CRC of the length
_FOOTER = struct.Struct("<I")  # masked CRC of the payload


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def _crc32c_python(data: bytes) -> int:
    """CRC32C of ``data``, table-driven, pure Python (the fallback)."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data: bytes) -> int:
    r"""CRC32C (Castagnoli) of ``data``, as an unsigned 32-bit integer.

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    if google_crc32c is not None:
        return google_crc32c.value(bytes(data))
    return _crc32c_python(data)


def masked_crc32c(data: bytes) -> int:
    r"""The masked CRC32C that TFRecord stores: ``((c >> 15) | (c << 17)) + 0xA282EAD8`` mod 2^32.

    Example:
        >>> hex(masked_crc32c(b""))
        '0xa282ead8'
    """
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


class CorruptRecord(ValueError):
    r"""A record that cannot be trusted: bad length or payload CRC, or cut off.

    Attributes:
        path: The file (or ``tar:member``) holding the record.
        offset: Byte offset of the record in the file.
        reason: What is wrong.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path} @ {offset}: {reason}")
        self.path, self.offset, self.reason = path, offset, reason

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across worker processes
        return type(self), (self.path, self.offset, self.reason)


@dataclass(frozen=True)
class Record:
    r"""One record of a TFRecord file.

    Attributes:
        index: Position of the record in the file, 0-based, counting corrupt records before it.
        offset: Byte offset of the record (its length field) in the file.
        payload: The record's bytes (CRC checked).
    """

    index: int
    offset: int
    payload: bytes


def _frames(
    path: str | os.PathLike, start: int, length: int | None
) -> Iterator[tuple[int, int, bytes | None, str | None]]:
    r"""(index, offset, payload or None, reason or None) for each framed record."""
    with open(path, "rb") as stream:
        stream.seek(start)
        end = start + length if length is not None else os.fstat(stream.fileno()).st_size
        position, index = start, 0
        while position < end:
            offset = position - start
            header = stream.read(min(_HEADER.size, end - position))
            if len(header) < _HEADER.size:
                reason = f"truncated record header ({len(header)} of {_HEADER.size} bytes)"
                yield index, offset, None, reason
                return
            size, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                yield index, offset, None, "bad length CRC (cannot frame the rest)"
                return
            left = end - position - _HEADER.size
            if size + _FOOTER.size > left:
                reason = f"truncated record (length {size} + 4, {left} bytes left in the file)"
                yield index, offset, None, reason
                return
            body = stream.read(size + _FOOTER.size)
            if len(body) < size + _FOOTER.size:  # the file shrank while reading
                yield index, offset, None, "truncated record (file ended early)"
                return
            payload = body[:size]
            (payload_crc,) = _FOOTER.unpack_from(body, size)
            if masked_crc32c(payload) != payload_crc:
                yield index, offset, None, "bad payload CRC"
            else:
                yield index, offset, payload, None
            position += _HEADER.size + size + _FOOTER.size
            index += 1


def iter_records(
    path: str | os.PathLike,
    on_corrupt: Literal["raise", "skip"] = "raise",
    skipped: list[str] | None = None,
    *,
    start: int = 0,
    length: int | None = None,
    name: str | None = None,
) -> Iterator[Record]:
    r"""The records of a TFRecord file, CRC-checked, read sequentially.

    Arguments:
        path: The TFRecord file.
        on_corrupt: ``"raise"`` raises :class:`CorruptRecord`; ``"skip"`` yields nothing for a
            corrupt record and appends "FILE @ OFFSET: reason" to ``skipped``. After a bad
            length CRC or a truncated record the file ends; after a bad payload CRC (with a
            good length CRC) reading goes on with the next record.
        skipped: Receives the reports of skipped records (``on_corrupt="skip"``).
        start: Read the bytes ``[start, start + length)`` of ``path`` only, e.g. a member of
            an uncompressed tar; offsets are then relative to ``start``.
        length: See ``start``; None reads to the end of the file.
        name: The name in reports (default: ``path``).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "a.tfrecords")
        >>> write_records(path, [b"first", b"second"])
        [0, 21]
        >>> [(r.offset, r.payload) for r in iter_records(path)]
        [(0, b'first'), (21, b'second')]
    """
    if on_corrupt not in ("raise", "skip"):
        raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
    label = name or os.fspath(path)
    for index, offset, payload, reason in _frames(path, start, length):
        if payload is not None:
            yield Record(index, offset, payload)
            continue
        error = CorruptRecord(label, offset, reason or "corrupt")
        if on_corrupt == "raise":
            raise error
        if skipped is not None:
            skipped.append(str(error))


def count_records(path: str | os.PathLike, *, start: int = 0, length: int | None = None) -> int:
    r"""Number of records framed in a file (length CRCs checked, payloads skipped, not checked).

    Reads 12 bytes per record: cheap enough to plan a split. Counting stops where framing stops
    (bad length CRC, truncation); records with a bad payload CRC are counted.
    """
    count = 0
    with open(path, "rb") as stream:
        stream.seek(start)
        end = start + length if length is not None else os.fstat(stream.fileno()).st_size
        position = start
        while position + _HEADER.size <= end:
            header = stream.read(_HEADER.size)
            if len(header) < _HEADER.size:  # the file is shorter than ``length``
                break
            size, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                break
            position += _HEADER.size + size + _FOOTER.size
            if position > end:
                break
            stream.seek(position)
            count += 1
    return count


def write_records(path: str | os.PathLike, payloads: Iterable[bytes]) -> list[int]:
    r"""Writes payloads as a TFRecord file (with masked CRCs); returns each record's offset."""
    offsets = []
    with open(path, "wb") as stream:
        for payload in payloads:
            payload = bytes(payload)
            offsets.append(stream.tell())
            length = struct.pack("<Q", len(payload))
            stream.write(length + struct.pack("<I", masked_crc32c(length)))
            stream.write(payload + _FOOTER.pack(masked_crc32c(payload)))
    return offsets


# Protocol buffers wire format: tag = field << 3 | wire type.
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= len(data):
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(data: memoryview) -> Iterator[tuple[int, int, Any]]:
    r"""(field number, wire type, value): an int for varints and fixed, a memoryview for bytes."""
    position, end = 0, len(data)
    while position < end:
        tag, position = _varint(data, position)
        number, kind = tag >> 3, tag & 7
        if kind == _VARINT:
            value, position = _varint(data, position)
        elif kind == _LENGTH:
            size, position = _varint(data, position)
            if position + size > end:
                raise ValueError(f"field {number}: length {size} past the end of the message")
            value, position = data[position : position + size], position + size
        elif kind in (_FIXED64, _FIXED32):
            width = 8 if kind == _FIXED64 else 4
            if position + width > end:
                raise ValueError(f"field {number}: truncated fixed-width value")
            value, position = data[position : position + width], position + width
        else:
            raise ValueError(f"field {number}: unsupported wire type {kind} (groups)")
        yield number, kind, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_feature(data: memoryview) -> Feature:
    values: Feature = []
    for number, _, kind_data in _fields(data):
        if number not in (1, 2, 3) or not isinstance(kind_data, memoryview):
            continue  # unknown field
        if number == 1:  # BytesList
            values = [bytes(v) for n, k, v in _fields(kind_data) if n == 1 and k == _LENGTH]
        elif number == 2:  # FloatList
            parts = []
            for n, k, v in _fields(kind_data):
                if n == 1 and k in (_LENGTH, _FIXED32):  # packed or one value
                    parts.append(np.frombuffer(v, "<f4"))
            values = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        else:  # Int64List
            ints: list[int] = []
            for n, k, v in _fields(kind_data):
                if n == 1 and k == _VARINT:
                    ints.append(_signed64(v))
                elif n == 1 and k == _LENGTH:
                    position = 0
                    while position < len(v):
                        value, position = _varint(v, position)
                        ints.append(_signed64(value))
            values = np.array(ints, dtype=np.int64)
    return values


def parse_example(payload: bytes) -> dict[str, Feature]:
    r"""The features of a serialized ``tf.train.Example``.

    Returns:
        ``{key: value}`` with ``list[bytes]`` for a bytes_list, a float32 array for a
        float_list and an int64 array for an int64_list (an unset Feature gives ``[]``).

    Raises:
        ValueError: The payload is not a well-formed protobuf message.

    Example:
        >>> features = parse_example(encode_example({"a": [b"x"], "b": np.array([1.5, 2.0])}))
        >>> features["a"], features["b"]
        ([b'x'], array([1.5, 2. ], dtype=float32))
    """
    features: dict[str, Feature] = {}
    for number, kind, example_field in _fields(memoryview(payload)):
        if number != 1 or kind != _LENGTH:
            continue  # Example.features = 1
        for entry_number, entry_kind, entry in _fields(example_field):
            if entry_number != 1 or entry_kind != _LENGTH:
                continue  # Features.feature = 1: map entries
            key, value = "", memoryview(b"")
            for n, k, v in _fields(entry):
                if n == 1 and k == _LENGTH:
                    key = bytes(v).decode("utf-8")
                elif n == 2 and k == _LENGTH:
                    value = v
            features[key] = _parse_feature(value)
    return features


def _tag(number: int, kind: int) -> bytes:
    return _encode_varint(number << 3 | kind)


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64: ten bytes, two's complement
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(number: int, data: bytes) -> bytes:
    return _tag(number, _LENGTH) + _encode_varint(len(data)) + data


def _encode_feature(key: str, value: Any, packed: bool) -> bytes:
    text = bytes | bytearray | str
    if isinstance(value, text):
        value = [value]
    if isinstance(value, np.ndarray) and value.dtype.kind in "iub":
        kind = "int"
    elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
        kind = "float"
    elif isinstance(value, Sequence) and all(
        isinstance(v, bytes | bytearray | str) for v in value
    ):
        kind = "bytes"
    elif isinstance(value, Sequence) and all(isinstance(v, int | np.integer) for v in value):
        kind = "int"
    elif isinstance(value, Sequence) and all(isinstance(v, float | int) for v in value):
        kind = "float"
    else:
        raise TypeError(
            f"feature {key!r}: expected bytes/str values, ints or floats (list or array), "
            f"got {type(value).__name__}"
        )
    if kind == "bytes":
        items = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in value]
        inner = _length_delimited(1, b"".join(_length_delimited(1, v) for v in items))
    elif kind == "float":
        floats = np.asarray(value, dtype="<f4").ravel()
        if packed:
            body = _length_delimited(1, floats.tobytes())
        else:
            body = b"".join(_tag(1, _FIXED32) + f.tobytes() for f in floats)
        inner = _length_delimited(2, body)
    else:
        ints = [int(v) for v in np.asarray(value).ravel()]
        if packed:
            body = _length_delimited(1, b"".join(_encode_varint(v) for v in ints))
        else:
            body = b"".join(_tag(1, _VARINT) + _encode_varint(v) for v in ints)
        inner = _length_delimited(3, body)
    entry = _length_delimited(1, key.encode("utf-8")) + _length_delimited(2, inner)
    return _length_delimited(1, entry)


def encode_example(features: Mapping[str, Any], packed: bool = True) -> bytes:
    r"""Serializes features as a ``tf.train.Example`` (the inverse of :func:`parse_example`).

    Arguments:
        features: ``{key: value}``: bytes or str values (one or a list) become a bytes_list,
            integer arrays or lists of ints an int64_list, float arrays or lists of floats a
            float_list (float32); an empty list gives an empty bytes_list.
        packed: Write repeated floats and ints packed (as TensorFlow does) or one by one.
    """
    return _length_delimited(
        1, b"".join(_encode_feature(key, value, packed) for key, value in features.items())
    )
