"""TFLite interop: write an IntModel as a .tflite flatbuffer, read an int8 .tflite into an IntModel,
and run .tflite files with the TensorFlow Lite Micro interpreter (the `tflite-micro` package).

The flatbuffer schema classes come with tflite-micro (flatc-generated, object API); the model is
written with `flatbuffers`. tinykws stores its labels and front-end settings as JSON in the
model's metadata ("tinykws"), so `tinykws.train.evaluate_tflite` can make the features a model expects.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from . import kernels as K
from .graph import QuantizationError
from .integer import IntModel, IntOp, QTensor

META_KEY = "tinykws"
_OPS = {"conv": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D", "fc": "FULLY_CONNECTED", "avgpool": "AVERAGE_POOL_2D",
        "maxpool": "MAX_POOL_2D", "add": "ADD", "softmax": "SOFTMAX", "reshape": "RESHAPE", "pad": "PAD"}
_KINDS = {v: k for k, v in _OPS.items()}
_ACTS = {"none": 0, "relu": 1, "relu_n1_to_1": 2, "relu6": 3}


class TFLiteError(QuantizationError):
    """A .tflite file that cannot be read or run by tinykws; the message names the file and the problem."""


class UnsupportedOpError(TFLiteError):
    """A well-formed .tflite with an op tinykws has no integer kernel for; `ops` names them."""

    def __init__(self, message: str, ops: list[str]):
        super().__init__(message)
        self.ops = ops


def _schema():
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    except ImportError as exc:  # pragma: no cover - a dependency
        raise QuantizationError("reading and writing .tflite files needs the tflite-micro package "
                                "(pip install --pre tflite-micro)") from exc
    return fb


def _builtin_names(fb) -> dict:
    return {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}


def activation_range(act: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite CalculateActivationRangeQuantized for int8 (f / scale in float32, rounded half away)."""
    def q(f):
        return zero_point + int(K._round_half_away(np.float32(f) / np.float32(scale)))
    if act == "relu":
        return max(-128, q(0.0)), 127
    if act == "relu6":
        return max(-128, q(0.0)), min(127, q(6.0))
    if act == "relu_n1_to_1":
        return max(-128, q(-1.0)), min(127, q(1.0))
    return -128, 127


def same_padding(in_size: int, filt: int, stride: int) -> tuple[int, int]:
    """TF SAME padding (before, after) for one dimension."""
    out = math.ceil(in_size / stride)
    total = max((out - 1) * stride + filt - in_size, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------------------- export

def to_tflite_bytes(im: IntModel, description: str = "tinykws") -> bytes:
    """Serialize an IntModel as a .tflite flatbuffer (int8, per-channel weights, int32 biases)."""
    import flatbuffers

    fb = _schema()
    T = im.tensors
    tensors, buffers, ops, codes = [], [fb.BufferT()], [], []
    code_index: dict[int, int] = {}
    index: dict[int, int] = {}

    def add_tensor(name, shape, ttype, scale=None, zp=None, qdim=0, data=None) -> int:
        t = fb.TensorT()
        t.name, t.shape, t.type = name.encode(), np.asarray(shape, np.int32), ttype
        t.buffer = 0
        if data is not None:
            buf = _AlignedBuffer()
            buf.data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            buffers.append(buf)
            t.buffer = len(buffers) - 1
        if scale is not None:
            q = fb.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(zp)]
            q.quantizedDimension = qdim
            t.quantization = q
        tensors.append(t)
        return len(tensors) - 1

    def tensor_of(i: int, qdim: int = 0) -> int:
        if i not in index:
            t = T[i]
            ttype = fb.TensorType.INT32 if t.data is not None and t.data.dtype == np.int32 else fb.TensorType.INT8
            index[i] = add_tensor(t.name, t.shape, ttype, t.scale, t.zero_point, qdim, t.data)
        return index[i]

    def add_op(code_name: str, inputs, outputs, opt_type=0, opts=None):
        code = getattr(fb.BuiltinOperator, code_name)
        if code not in code_index:
            oc = fb.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            codes.append(oc)
            code_index[code] = len(codes) - 1
        op = fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = code_index[code], np.asarray(inputs, np.int32), np.asarray(outputs, np.int32)
        op.builtinOptionsType, op.builtinOptions = opt_type, opts
        ops.append(op)

    for op in im.ops:
        o = op.opts
        name = T[op.output].name
        fused = _fused(op, T)
        if op.kind in ("conv", "depthwise"):
            x = T[op.inputs[0]]
            kh, kw = T[op.inputs[1]].shape[1:3]
            pad = o["pad"]
            same = same_padding(x.shape[1], kh, o["stride"][0]) + same_padding(x.shape[2], kw, o["stride"][1])
            src = tensor_of(op.inputs[0])
            if tuple(pad) == same and any(pad):
                padding = fb.Padding.SAME
            elif not any(pad):
                padding = fb.Padding.VALID
            else:  # explicit zero padding: a PAD op (pads with the zero point) in front of a VALID conv
                padded = add_tensor(name + "/pad", (1, x.shape[1] + pad[0] + pad[1], x.shape[2] + pad[2] + pad[3], x.shape[3]),
                                    fb.TensorType.INT8, x.scale, x.zero_point)
                pads = add_tensor(name + "/paddings", (4, 2), fb.TensorType.INT32,
                                  data=np.array([[0, 0], [pad[0], pad[1]], [pad[2], pad[3]], [0, 0]], np.int32))
                add_op("PAD", [src, pads], [padded])
                src, padding = padded, fb.Padding.VALID
            if op.kind == "conv":
                opts = fb.Conv2DOptionsT()
                opt_type = fb.BuiltinOptions.Conv2DOptions
                qdim = 0
            else:
                opts = fb.DepthwiseConv2DOptionsT()
                opts.depthMultiplier = o.get("depth_multiplier", 1)
                opt_type = fb.BuiltinOptions.DepthwiseConv2DOptions
                qdim = 3
            opts.padding, opts.strideH, opts.strideW = padding, o["stride"][0], o["stride"][1]
            opts.dilationHFactor = opts.dilationWFactor = 1
            opts.fusedActivationFunction = fused
            add_op(_OPS[op.kind], [src, tensor_of(op.inputs[1], qdim), tensor_of(op.inputs[2])], [tensor_of(op.output)],
                   opt_type, opts)
        elif op.kind == "fc":
            opts = fb.FullyConnectedOptionsT()
            opts.fusedActivationFunction = fused
            ins = [tensor_of(op.inputs[0]), tensor_of(op.inputs[1])]
            ins.append(tensor_of(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else -1)
            add_op("FULLY_CONNECTED", ins, [tensor_of(op.output)], fb.BuiltinOptions.FullyConnectedOptions, opts)
        elif op.kind in ("avgpool", "maxpool"):
            if any(o["pad"]):
                raise QuantizationError(f"pool {name!r}: padded pooling cannot be exported")
            opts = fb.Pool2DOptionsT()
            opts.padding, opts.strideH, opts.strideW = fb.Padding.VALID, o["stride"][0], o["stride"][1]
            opts.filterHeight, opts.filterWidth = o["filter"]
            opts.fusedActivationFunction = 0
            add_op(_OPS[op.kind], [tensor_of(op.inputs[0])], [tensor_of(op.output)], fb.BuiltinOptions.Pool2DOptions, opts)
        elif op.kind == "add":
            opts = fb.AddOptionsT()
            opts.fusedActivationFunction = fused
            add_op("ADD", [tensor_of(i) for i in op.inputs], [tensor_of(op.output)], fb.BuiltinOptions.AddOptions, opts)
        elif op.kind == "softmax":
            opts = fb.SoftmaxOptionsT()
            opts.beta = o.get("beta", 1.0)
            add_op("SOFTMAX", [tensor_of(op.inputs[0])], [tensor_of(op.output)], fb.BuiltinOptions.SoftmaxOptions, opts)
        elif op.kind == "reshape":
            out = T[op.output]
            shape = add_tensor(name + "/shape", (len(out.shape),), fb.TensorType.INT32, data=np.asarray(out.shape, np.int32))
            opts = fb.ReshapeOptionsT()
            opts.newShape = np.asarray(out.shape, np.int32)
            add_op("RESHAPE", [tensor_of(op.inputs[0]), shape], [tensor_of(op.output)], fb.BuiltinOptions.ReshapeOptions, opts)
        elif op.kind == "pad":
            p = o["pad"]
            pads = add_tensor(name + "/paddings", (4, 2), fb.TensorType.INT32,
                              data=np.array([[0, 0], [p[0], p[1]], [p[2], p[3]], [0, 0]], np.int32))
            add_op("PAD", [tensor_of(op.inputs[0]), pads], [tensor_of(op.output)])
        else:
            raise QuantizationError(f"op {op.kind!r} ({name}) cannot be exported to TFLite")

    sg = fb.SubGraphT()
    sg.tensors, sg.operators = tensors, ops
    sg.inputs, sg.outputs = np.asarray([tensor_of(im.input)], np.int32), np.asarray([tensor_of(im.output)], np.int32)
    sg.name = b"main"
    model = fb.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, codes, [sg]
    model.description = description.encode()
    meta = _AlignedBuffer()
    meta.data = np.frombuffer(json.dumps(im.meta).encode(), np.uint8)
    buffers.append(meta)
    md = fb.MetadataT()
    md.name, md.buffer = META_KEY.encode(), len(buffers) - 1
    model.metadata, model.buffers = [md], buffers
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _fused(op: IntOp, T) -> int:
    """The TFLite fused activation whose clamp is exactly the op's [qmin, qmax], or an error."""
    if op.kind in ("avgpool", "maxpool", "reshape", "softmax", "pad"):
        return 0
    out = T[op.output]
    act = op.opts.get("act", "none")
    got = (op.opts.get("qmin", -128), op.opts.get("qmax", 127))
    want = activation_range(act, out.scale[0], out.zp)
    if got != want:
        raise QuantizationError(f"layer {out.name!r}: its output clamp {got} is not a TFLite activation ({act} gives "
                                f"{want}); activations below 8 bits export only after a ReLU")
    return _ACTS[act]


class _AlignedBuffer:
    """A BufferT whose data starts on a 16-byte boundary (int32 biases, SIMD loads on the MCU)."""

    data: np.ndarray | None = None

    def Pack(self, builder):
        fb = _schema()
        vec = None
        if self.data is not None:
            raw = self.data.tobytes()
            builder.StartVector(1, len(raw), 16)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            builder.vectorNumElems = len(raw)
            vec = builder.EndVector()
        fb.BufferStart(builder)
        if vec is not None:
            fb.BufferAddData(builder, vec)
        return fb.BufferEnd(builder)


def export_tflite(im: IntModel, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(to_tflite_bytes(im))
    return path


# ---------------------------------------------------------------------------- import

def read_tflite(path_or_bytes) -> IntModel:
    """An int8 .tflite (e.g. the MLPerf Tiny KWS reference) as an IntModel; clear errors for ops or
    types tinykws has no integer kernel for."""
    fb = _schema()
    src = str(path_or_bytes) if isinstance(path_or_bytes, (str, Path)) else "<bytes>"
    if isinstance(path_or_bytes, (str, Path)):
        path = Path(path_or_bytes)
        if not path.is_file():
            raise TFLiteError(f"{src}: no such .tflite file")
        try:
            buf = path.read_bytes()
        except OSError as exc:
            raise TFLiteError(f"{src}: cannot be read ({exc.strerror or exc})") from None
    else:
        buf = bytes(path_or_bytes)
    if len(buf) == 0:
        raise TFLiteError(f"{src}: empty file, not a .tflite model")
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise TFLiteError(f"{src}: not a readable .tflite file (no TFL3 file identifier)")
    # the flatbuffers reader trusts every offset: a damaged file fails anywhere with struct/index errors
    try:
        m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(buf, 0))
        return _to_intmodel(m, fb, src)
    except TFLiteError:
        raise
    except QuantizationError as exc:
        raise TFLiteError(str(exc)) from None
    except (struct.error, IndexError, AttributeError, TypeError, ValueError, KeyError, OverflowError,
            UnicodeDecodeError, MemoryError) as exc:
        raise TFLiteError(f"{src}: truncated or damaged .tflite file ({exc.__class__.__name__}: {exc})") from None


def _check_index(src: str, what: str, i, n: int) -> int:
    i = int(i)
    if not 0 <= i < n:
        raise TFLiteError(f"{src}: {what} {i} is out of range (the file has {n}); damaged .tflite file")
    return i


def _to_intmodel(m, fb, src: str) -> IntModel:
    names = _builtin_names(fb)
    if not m.subgraphs:
        raise TFLiteError(f"{src}: no subgraph; damaged .tflite file")
    if len(m.subgraphs) != 1:
        raise QuantizationError(f"{src}: {len(m.subgraphs)} subgraphs; only single-subgraph models are supported")
    sg = m.subgraphs[0]
    codes = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), f"custom:{c.customCode}")
             for c in (m.operatorCodes or [])]
    n_t, n_b = len(sg.tensors or []), len(m.buffers or [])
    for k, op in enumerate(sg.operators or []):
        _check_index(src, f"op #{k}: opcode index", op.opcodeIndex, len(codes))
        if op.outputs is None or len(op.outputs) == 0:
            raise TFLiteError(f"{src}: op #{k} has no output; damaged .tflite file")
        for i in list(op.inputs if op.inputs is not None else []) + list(op.outputs):
            if int(i) != -1:  # -1: an optional input left out (e.g. no bias)
                _check_index(src, f"op #{k}: tensor index", i, n_t)
    for i in list(sg.inputs if sg.inputs is not None else []) + list(sg.outputs if sg.outputs is not None else []):
        _check_index(src, "subgraph input/output tensor index", i, n_t)
    if sg.inputs is None or len(sg.inputs) == 0 or sg.outputs is None or len(sg.outputs) == 0:
        raise TFLiteError(f"{src}: the subgraph has no input or no output; damaged .tflite file")
    for t in sg.tensors or []:
        _check_index(src, f"tensor {t.name!r}: buffer index", t.buffer, n_b)
    bad = sorted({codes[op.opcodeIndex] for op in sg.operators or []} - set(_KINDS))
    if bad:
        raise UnsupportedOpError(f"{src}: unsupported TFLite ops {', '.join(bad)}; tinykws runs "
                                 f"{', '.join(sorted(_KINDS))}", bad)
    type_names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    tensors = []
    for i, t in enumerate(sg.tensors or []):
        data = m.buffers[t.buffer].data if t.buffer and m.buffers[t.buffer].data is not None else None
        shape = tuple(int(s) for s in (t.shape if t.shape is not None else []))
        dt = {fb.TensorType.INT8: np.int8, fb.TensorType.INT32: np.int32}.get(t.type)
        if dt is None:
            raise QuantizationError(f"{src}: tensor {t.name.decode()!r} is {type_names.get(t.type, t.type)}; "
                                    f"only int8 models (int32 biases) can be imported")
        arr = np.frombuffer(np.asarray(data, np.uint8).tobytes(), dt).reshape(shape) if data is not None else None
        q = t.quantization
        scale = np.asarray(q.scale if q is not None and q.scale is not None else [1.0], np.float32)
        zp = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [0], np.int64)
        if dt is np.int8 and (q is None or q.scale is None):
            raise QuantizationError(f"{src}: tensor {t.name.decode()!r} is int8 without quantization parameters")
        tensors.append(QTensor(t.name.decode(errors="replace"), shape, scale, zp, arr))
    ops = []
    for k, op in enumerate(sg.operators or []):
        kind = _KINDS[codes[op.opcodeIndex]]
        o = op.builtinOptions
        ins, out = [int(i) for i in op.inputs], int(op.outputs[0])
        opts: dict = {}
        act = {v: k for k, v in _ACTS.items()}.get(getattr(o, "fusedActivationFunction", 0))
        if act is None:
            raise QuantizationError(f"{src}: op #{k} ({codes[op.opcodeIndex]}) has an unsupported fused activation")
        if kind in ("conv", "depthwise"):
            if (o.dilationHFactor, o.dilationWFactor) != (1, 1):
                raise QuantizationError(f"{src}: op #{k} ({codes[op.opcodeIndex]}) uses dilation")
            x, w = tensors[ins[0]], tensors[ins[1]]
            opts["stride"] = (o.strideH, o.strideW)
            opts["pad"] = _pads(o.padding, x.shape, w.shape[1:3], opts["stride"], fb)
            if kind == "depthwise":
                opts["depth_multiplier"] = o.depthMultiplier
        elif kind in ("avgpool", "maxpool"):
            opts["stride"], opts["filter"] = (o.strideH, o.strideW), (o.filterHeight, o.filterWidth)
            opts["pad"] = _pads(o.padding, tensors[ins[0]].shape, opts["filter"], opts["stride"], fb)
        elif kind == "softmax":
            opts["beta"] = float(o.beta)
        elif kind == "pad":
            p = tensors[ins[1]].data
            if p is None or p[0].any() or p[3].any():
                raise QuantizationError(f"{src}: op #{k} (PAD) pads batch or channels")
            opts["pad"] = (int(p[1][0]), int(p[1][1]), int(p[2][0]), int(p[2][1]))
            ins = ins[:1]
        if kind == "reshape":
            ins = ins[:1]
        if kind == "add" and tensors[ins[0]].shape != tensors[ins[1]].shape:
            raise QuantizationError(f"{src}: op #{k} (ADD) broadcasts; only same-shape additions are supported")
        if kind in ("conv", "depthwise", "fc", "add"):
            opts["act"] = act
            opts["qmin"], opts["qmax"] = activation_range(act, tensors[out].scale[0], tensors[out].zp)
        ops.append(IntOp(kind, ins, out, opts))
    meta = {}
    for md in m.metadata or []:
        if md.name.decode(errors="replace") == META_KEY:
            meta = json.loads(bytes(np.asarray(m.buffers[md.buffer].data, np.uint8)).decode())
    return IntModel(tensors, ops, int(sg.inputs[0]), int(sg.outputs[0]), meta)


def _pads(padding, in_shape, filt, stride, fb) -> tuple:
    if padding == fb.Padding.VALID:
        return (0, 0, 0, 0)
    return same_padding(in_shape[1], filt[0], stride[0]) + same_padding(in_shape[2], filt[1], stride[1])


# ---------------------------------------------------------------------------- TFLite Micro

def tflm_run(model: bytes | str | Path, x: np.ndarray) -> np.ndarray:
    """Run a .tflite (bytes or path) with the TFLite Micro interpreter, one clip at a time.
    x: int8 inputs (B, *input_shape[1:]); returns the int8 outputs (B, ...)."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:  # pragma: no cover
        raise QuantizationError("running .tflite files needs the tflite-micro package (pip install --pre tflite-micro)") from exc
    src = str(model) if isinstance(model, (str, Path)) else "<bytes>"
    try:
        data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    except OSError as exc:
        raise TFLiteError(f"{src}: cannot be read ({exc.strerror or exc})") from None
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TFLiteError(f"{src}: not a readable .tflite file (no TFL3 file identifier)")
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=max(len(data) * 10, 256 * 1024))
    except (RuntimeError, ValueError, struct.error, TypeError, IndexError, AttributeError) as exc:
        why = (str(exc).strip().splitlines() or [exc.__class__.__name__])[-1]
        raise TFLiteError(f"{src}: truncated or damaged .tflite file; TFLite Micro cannot load it ({why})") from None
    outs = []
    for clip in np.asarray(x):
        interp.set_input(clip[None], 0)
        interp.invoke()
        outs.append(np.array(interp.get_output(0)).reshape(-1))
    return np.stack(outs)
