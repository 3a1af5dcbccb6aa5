"""Reading a .tflite file's structure without loading it into an interpreter.

A bounds-checked walk of the FlatBuffer (schema: tensorflow/lite/schema/schema.fbs) that yields the
operator codes, tensors, inputs and outputs. It lets the runtime tell an Edge TPU model (the
`edgetpu-custom-op` operator) before an interpreter fails on it, and turn a corrupt file into one line.

read_model_io() is what the device needs before loading a model (operator codes, input and output tensors,
every buffer inside the file): it reads through a memory map, so only the pages it looks at are read and
nothing stays in memory; read_model_info() parses everything, for the host tools.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ModelError
from ..core.files import open_regular, read_file

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"

TENSOR_TYPES = ["float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64", "int8",
                "float64", "complex128", "uint64", "resource", "variant", "uint32", "uint16", "int4"]

# BuiltinOperator enum values 0..161, in order.
BUILTIN_OPS = (
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP FLOOR "
    "FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION LOGISTIC "
    "LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH "
    "SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN "
    "GATHER BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM "
    "STRIDED_SLICE BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM "
    "CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN "
    "TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN "
    "FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV "
    "REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE "
    "MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG "
    "QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND "
    "SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO "
    "RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL "
    "CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE "
    "RANDOM_UNIFORM MULTINOMIAL GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX "
    "UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT"
).split()


class CorruptModel(Exception):
    """An offset points outside the file: read_model_info turns it into ModelError."""


class FlatReader:
    """Bounds-checked access to a FlatBuffer: tables, vectors and strings by field index (schema.fbs order)."""

    def __init__(self, data: bytes):
        self.data = data

    def _u(self, fmt: str, pos: int):
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.data):
            raise CorruptModel(pos)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int) -> "FlatTable":
        vtable = pos - self._u("<i", pos)
        vt_size = self._u("<H", vtable)
        if vt_size < 4 or vtable + vt_size > len(self.data):
            raise CorruptModel(vtable)
        return FlatTable(self, pos, vtable, vt_size)

    def deref(self, pos: int) -> int:
        return pos + self._u("<I", pos)


class FlatTable:
    def __init__(self, reader: FlatReader, pos: int, vtable: int, vt_size: int):
        self.r, self.pos, self.vtable, self.vt_size = reader, pos, vtable, vt_size

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot + 2 > self.vt_size:
            return 0
        off = self.r._u("<H", self.vtable + slot)
        return self.pos + off if off else 0

    def scalar(self, index: int, fmt: str, default=0):
        p = self._field(index)
        return self.r._u(fmt, p) if p else default

    def table(self, index: int) -> "FlatTable | None":
        p = self._field(index)
        return self.r.table(self.r.deref(p)) if p else None

    def vector_span(self, index: int) -> tuple[int, int]:
        """(offset of the first element, element count) of a vector field; (0, 0) when absent."""
        p = self._field(index)
        if not p:
            return 0, 0
        start = self.r.deref(p)
        n = self.r._u("<I", start)
        return start + 4, n

    def vector(self, index: int, fmt: str) -> list:
        start, n = self.vector_span(index)
        size = struct.calcsize(fmt)
        if start + n * size > len(self.r.data):
            raise CorruptModel(start)
        return list(struct.unpack_from(f"<{n}{fmt[-1]}", self.r.data, start)) if n else []

    def vector_bytes_range(self, index: int) -> tuple[int, int]:
        start, n = self.vector_span(index)
        if start + n > len(self.r.data):
            raise CorruptModel(start)
        return start, n

    def table_at(self, index: int, i: int) -> "FlatTable":
        """Element i of a vector of tables."""
        start, n = self.vector_span(index)
        if not 0 <= i < n or start + 4 * n > len(self.r.data):
            raise CorruptModel(start)
        return self.r.table(self.r.deref(start + 4 * i))

    def tables(self, index: int) -> list["FlatTable"]:
        start, n = self.vector_span(index)
        if start + 4 * n > len(self.r.data):
            raise CorruptModel(start)
        return [self.r.table(self.r.deref(start + 4 * i)) for i in range(n)]

    def string(self, index: int) -> str | None:
        start, n = self.vector_span(index)
        if not start:
            return None
        if start + n > len(self.r.data):
            raise CorruptModel(start)
        return self.r.data[start:start + n].decode("utf-8", "replace")


SMALL_CONSTANT_VALUES = 64  # int32 constants up to this many values (axes, shapes) are read out


@dataclass
class TensorInfo:
    name: str
    shape: list[int]
    dtype: str
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)
    buffer_bytes: int = 0
    shape_signature: list[int] = field(default_factory=list)  # -1 marks a dynamic dimension
    int32_values: list[int] | None = None  # a small int32 constant's values

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature) or any(d <= 0 for d in self.shape)

    @property
    def quantized(self) -> bool:
        return bool(self.scale) and self.dtype in ("int8", "uint8", "int16")


@dataclass
class OperatorInfo:
    name: str  # builtin name, or the custom code
    inputs: list[int]
    outputs: list[int]
    _options: "FlatTable | None" = field(default=None, repr=False)

    def option(self, index: int, fmt: str, default=0):
        """A scalar field of the operator's builtin options table (field numbers as in schema.fbs)."""
        try:
            return self._options.scalar(index, fmt, default) if self._options is not None else default
        except CorruptModel:
            return default


@dataclass
class ModelInfo:
    """What a .tflite file holds, read without an interpreter."""

    path: Path
    size_bytes: int
    version: int
    operators: list[OperatorInfo]  # first subgraph, in execution order
    tensors: list[TensorInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    subgraphs: int
    operator_codes: list[str]

    @property
    def is_edgetpu(self) -> bool:
        """True for a model compiled by edgetpu_compiler: it holds the Edge TPU custom operator."""
        return EDGETPU_CUSTOM_OP in self.operator_codes

    @property
    def parameter_bytes(self) -> int:
        """Bytes of constant data (weights, biases) in the first subgraph."""
        return sum(t.buffer_bytes for t in self.tensors)

    def op_histogram(self) -> dict[str, int]:
        hist: dict[str, int] = {}
        for op in self.operators:
            hist[op.name] = hist.get(op.name, 0) + 1
        return hist


def _op_name(code: FlatTable) -> str:
    builtin = max(code.scalar(0, "<b"), code.scalar(3, "<i"))
    if builtin == 32:  # CUSTOM
        return code.string(1) or "CUSTOM"
    return BUILTIN_OPS[builtin] if 0 <= builtin < len(BUILTIN_OPS) else f"BUILTIN_{builtin}"


def _tensor(t: FlatTable, buffers: list[tuple[int, int]], data: bytes) -> TensorInfo:
    dtype_code = t.scalar(1, "<b")
    q = t.table(4)
    buf = t.scalar(2, "<I")
    start, size = buffers[buf] if 0 < buf < len(buffers) else (0, 0)
    dtype = TENSOR_TYPES[dtype_code] if 0 <= dtype_code < len(TENSOR_TYPES) else f"type{dtype_code}"
    values = None
    if dtype == "int32" and start and 0 < size <= 4 * SMALL_CONSTANT_VALUES:
        values = list(struct.unpack_from(f"<{size // 4}i", data, start))
    return TensorInfo(
        name=t.string(3) or "",
        shape=t.vector(0, "<i"),
        dtype=dtype,
        scale=q.vector(2, "<f") if q else [],
        zero_point=q.vector(3, "<q") if q else [],
        buffer_bytes=size,
        shape_signature=t.vector(7, "<i"),
        int32_values=values,
    )


@dataclass
class ModelIO:
    """What loading a model needs from its file (read_model_io)."""

    path: Path
    size_bytes: int
    operator_codes: list[str]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]

    @property
    def is_edgetpu(self) -> bool:
        return EDGETPU_CUSTOM_OP in self.operator_codes


def _check_header(path: Path, data) -> None:
    if not len(data):
        raise ModelError(f"{path}: model file is empty")
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TensorFlow Lite model (no TFL3 identifier)")


def _corrupt(path: Path, size: int) -> ModelError:
    return ModelError(f"{path}: model file is truncated or corrupt ({size} bytes); download it again")


def read_model_info(path: str | Path) -> ModelInfo:
    """Parse a .tflite file. Raises ModelError (one line) for a missing, empty, foreign or truncated file."""
    path = Path(path)
    data = read_file(path, "model file", ModelError)
    _check_header(path, data)
    try:
        return _parse(path, data)
    except (CorruptModel, struct.error, IndexError):
        raise _corrupt(path, len(data)) from None


def read_model_io(path: str | Path) -> ModelIO:
    """The operator codes and the input and output tensors of a .tflite file, with every buffer checked to lie
    inside the file; the same one-line ModelErrors as read_model_info. Reads through a memory map and keeps
    nothing of it: the weights are never read here."""
    path = Path(path)
    fd = open_regular(path, "model file", ModelError)  # a FIFO, a device or an absurd size: one line, no wait
    try:
        with open(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if not size:
                raise ModelError(f"{path}: model file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _check_header(path, data)
                try:
                    return _parse_io(path, data)
                except (CorruptModel, struct.error, IndexError):
                    raise _corrupt(path, size) from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the model file ({getattr(exc, 'strerror', None) or exc})") from None


def _parse_io(path: Path, data) -> ModelIO:
    r = FlatReader(data)
    model = r.table(r.deref(0))
    codes = [_op_name(c) for c in model.tables(1)]
    buffers = _buffer_spans(model, len(data))  # a truncated file ends inside a buffer
    subgraphs = model.tables(2)
    if not subgraphs:
        raise CorruptModel(0)
    sg = subgraphs[0]

    def tensor(i: int) -> TensorInfo:
        return _tensor(sg.table_at(0, i), buffers, data)
    inputs = [tensor(i) for i in sg.vector(1, "<i")]
    outputs = [tensor(i) for i in sg.vector(2, "<i")]
    return ModelIO(path=path, size_bytes=len(data), operator_codes=codes, inputs=inputs, outputs=outputs)


def _buffer_spans(model: FlatTable, size: int) -> list[tuple[int, int]]:
    """(start, size) of each buffer's data; start 0 when it is not inside the flatbuffer."""
    buffers = []
    for b in model.tables(4):
        start, n = b.vector_bytes_range(0)
        if not n:  # large models keep data outside the flatbuffer: offset/size fields
            offset, length = b.scalar(1, "<Q"), b.scalar(2, "<Q")
            if offset and offset + length > size:
                raise CorruptModel(offset)
            start, n = 0, length
        buffers.append((start, n))
    return buffers


def _parse(path: Path, data: bytes) -> ModelInfo:
    r = FlatReader(data)
    model = r.table(r.deref(0))
    codes = [_op_name(c) for c in model.tables(1)]
    buffers = _buffer_spans(model, len(data))
    subgraphs = model.tables(2)
    if not subgraphs:
        raise CorruptModel(0)
    sg = subgraphs[0]
    tensors = [_tensor(t, buffers, data) for t in sg.tables(0)]
    ops = []
    for op in sg.tables(3):
        index = op.scalar(0, "<I")
        if index >= len(codes):
            raise CorruptModel(index)
        ops.append(OperatorInfo(codes[index], op.vector(1, "<i"), op.vector(2, "<i"), op.table(4)))
    inputs = [tensors[i] for i in sg.vector(1, "<i")]
    outputs = [tensors[i] for i in sg.vector(2, "<i")]
    return ModelInfo(path=path, size_bytes=len(data), version=model.scalar(0, "<I"), operators=ops,
                     tensors=tensors, inputs=inputs, outputs=outputs, subgraphs=len(subgraphs),
                     operator_codes=codes)
