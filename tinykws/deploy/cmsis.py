"""The CMSIS-NN back end: a generated model.c with the tinykws `model.h` interface that calls
Arm's CMSIS-NN kernels (from a folder the user names; nothing of CMSIS-NN is copied).

The arena comes from the same memory planner as the tinykws kernels, with each op's CMSIS-NN
scratch size as its scratch buffer (no op runs in place). `model.c` checks at run time that the
`arm_*_get_buffer_size` of every op fits the planned scratch (else `tkws_invoke` returns the
negative layer number). The project's Makefile compiles the needed CMSIS-NN sources from
`CMSIS_DIR`; `build.json` lists them for `mcu.build_m7`.

    gen = generate_cmsis(im, "out/kws_cmsis", "/path/to/CMSIS-NN")
    run_host("out/kws_cmsis", x)    # bit-exact with im.run(x)
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..quant import kernels as K
from ..quant.integer import IntModel
from .codegen import c_array, c_float, c_string, prepare_out_dir
from .ops import CArray
from .plan import MemoryPlan, plan_memory

# CMSIS-NN source folders the s8 ops need; files for other data types are left out
_SOURCE_DIRS = ("ConvolutionFunctions", "NNSupportFunctions", "FullyConnectedFunctions", "PoolingFunctions",
                "SoftmaxFunctions", "BasicMathFunctions")
_SKIP = ("lstm", "svdf", "transpose", "_s4", "f16", "f32", "_flt", "batch_matmul", "_s16_s16")


class CmsisError(ValueError):
    """A CMSIS-NN folder or a model the back end cannot emit."""


@dataclass
class CmsisModel:
    """What generate_cmsis wrote: the layers (name, op, kernel, macs, shapes), the plan, the files."""

    out_dir: Path
    layers: list[dict]
    plan: MemoryPlan
    files: list[Path] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)  # CMSIS-NN sources compiled into the project


def cmsis_sources(cmsis_dir: str | Path) -> list[Path]:
    """The CMSIS-NN C files the s8 back end compiles (the linker drops what a model does not call)."""
    root = Path(cmsis_dir)
    if not (root / "Include" / "arm_nnfunctions.h").is_file():
        raise CmsisError(f"{cmsis_dir}: not a CMSIS-NN folder (no Include/arm_nnfunctions.h)")
    out = []
    for d in _SOURCE_DIRS:
        for f in sorted((root / "Source" / d).glob("*.c")):
            n = f.name
            if not any(s in n for s in _SKIP) and (not n.endswith("_s16.c") or n.endswith("_s8_s16.c")):
                out.append(f.resolve())
    return out


def _macs(im: IntModel, op) -> int:
    T = im.tensors
    out = int(np.prod(T[op.output].shape))
    if op.kind == "conv":
        w = T[op.inputs[1]].shape
        return out * int(np.prod(w[1:]))
    if op.kind == "depthwise":
        w = T[op.inputs[1]].shape
        return out * int(w[1] * w[2])
    if op.kind == "fc":
        return int(np.prod(T[op.inputs[1]].shape))
    return 0


def _hwc(shape) -> tuple[int, int, int]:
    s = tuple(int(v) for v in shape[1:])
    if len(s) == 3:
        return s
    if len(s) == 1:
        return 1, 1, s[0]
    return 1, s[0] if len(s) == 2 else 1, s[-1]


def scratch_bytes(im: IntModel, op) -> int:
    """An upper bound of the CMSIS-NN scratch of one op (DSP and plain C builds, not Helium)."""
    T = im.tensors
    if op.kind == "conv":
        _, kh, kw, cin = T[op.inputs[1]].shape
        pad, stride = op.opts["pad"], op.opts["stride"]
        if kh == kw == 1 and pad[0] == pad[2] == 0:
            return 2 * cin * 2
        cols = kh * kw * cin
        return 2 * ((cols + 3) // 4 * 4) * 2
    if op.kind == "depthwise":
        _, kh, kw, cout = T[op.inputs[1]].shape
        cin = _hwc(T[op.inputs[0]].shape)[2]
        pad = op.opts["pad"]
        if cin == cout and not (kh == kw == 3 and pad[0] <= 1 and pad[2] <= 1):
            return cin * kh * kw * 2
        return 0
    if op.kind == "avgpool":
        return _hwc(T[op.inputs[0]].shape)[2] * 4
    return 0


def _c_array(ctype: str, name: str, values) -> str:
    return c_array(name, CArray(ctype, np.asarray(values)))


def _dims(name: str, n, h, w, c) -> str:
    return f"    static const cmsis_nn_dims {name} = {{{n}, {h}, {w}, {c}}};\n"


def _ptr(plan: MemoryPlan, t: int, const: bool) -> str:
    where, off = plan.location(t)
    if where == "input":
        return "(int8_t *)input" if not const else "input"
    if where == "output":
        return "output"
    return f"(tkws_arena + {off})"


def _labels(im: IntModel) -> list[str]:
    labels = list(im.meta.get("labels") or [])
    n = int(np.prod(im.tensors[im.output].shape))
    return labels if len(labels) == n else [f"class_{i}" for i in range(n)]


def generate_cmsis(im: IntModel, out_dir: str | Path, cmsis_dir: str | Path, name: str = "tkws",
                   overwrite: bool = False) -> CmsisModel:
    """Write model.h, model.c, Makefile, build.json and README.md for `im` into `out_dir` (new, empty,
    or written by tinykws with overwrite)."""
    cmsis_dir = Path(cmsis_dir).resolve()
    sources = cmsis_sources(cmsis_dir)
    T = im.tensors
    for k, op in enumerate(im.ops):
        if op.kind not in ("conv", "depthwise", "fc", "avgpool", "maxpool", "add", "softmax", "reshape"):
            raise CmsisError(f"op {k} ({op.kind}): no CMSIS-NN call for this op")
    scratch = {k: scratch_bytes(im, op) for k, op in enumerate(im.ops)}
    plan = plan_memory(im, scratch={k: s for k, s in scratch.items() if s}, in_place=())

    consts, body, layers = [], [], []
    li = 0
    for k, op in enumerate(im.ops):
        if op.kind == "reshape":
            continue
        o, tin, tout = op.opts, T[op.inputs[0]], T[op.output]
        ih, iw, ic = _hwc(tin.shape)
        oh, ow, oc = _hwc(tout.shape)
        qmin, qmax = o.get("qmin", -128), o.get("qmax", 127)
        src, dst = _ptr(plan, op.inputs[0], True), _ptr(plan, op.output, False)
        sc = plan.scratch_offsets.get(k)
        ctx = (f"    cmsis_nn_context ctx = {{tkws_arena + {sc}, {scratch[k]}}};\n" if sc is not None
               else "    cmsis_nn_context ctx = {0, 0};\n")
        p = f"l{li}_"
        s = [f"    /* layer {li}: op {k} {op.kind} {tuple(tin.shape)} -> {tuple(tout.shape)} */\n",
             f"    TKWS_LAYER_MARK({li});\n", "    {\n"]
        kernel = ""
        if op.kind in ("conv", "depthwise", "fc"):
            w = T[op.inputs[1]]
            has_b = len(op.inputs) > 2 and op.inputs[2] >= 0
            nb = w.shape[0] if op.kind in ("conv", "fc") else w.shape[3]
            bias = T[op.inputs[2]].data if has_b else np.zeros(nb, np.int32)
            mult, shift = im._multipliers(op)
            consts.append(_c_array("int8_t", p + "w", w.data))
            consts.append(_c_array("int32_t", p + "b", bias))
            if op.kind == "fc" and len(mult) == 1:
                s.append(f"    static const cmsis_nn_per_tensor_quant_params q = {{{int(mult[0])}, {int(shift[0])}}};\n")
            else:
                m = np.broadcast_to(np.asarray(mult), (nb,))
                sh = np.broadcast_to(np.asarray(shift), (nb,))
                consts.append(_c_array("int32_t", p + "m", m))
                consts.append(_c_array("int32_t", p + "s", sh))
                s.append(f"    const cmsis_nn_per_channel_quant_params q = {{(int32_t *){p}m, (int32_t *){p}s}};\n")
            s += [_dims("in", 1, ih, iw, ic), _dims("outd", 1, oh, ow, oc), _dims("bd", 1, 1, 1, nb), ctx]
            if op.kind == "fc":
                in_n, out_n = int(w.shape[1]), int(w.shape[0])
                s += [_dims("fd", in_n, 1, 1, out_n),
                      f"    static const cmsis_nn_fc_params cp = {{{-tin.zp}, 0, {tout.zp}, {{{qmin}, {qmax}}}}};\n"]
                fn = "arm_fully_connected_s8" if len(mult) == 1 else "arm_fully_connected_per_channel_s8"
                kernel = fn
                s.append(f"    if (arm_fully_connected_s8_get_buffer_size(&fd) > ctx.size) return -{li + 1};\n")
            else:
                sy, sx = o["stride"]
                pt, _, pl, _ = o["pad"]
                if op.kind == "conv":
                    _, kh, kw, _ = w.shape
                    s += [_dims("fd", w.shape[0], kh, kw, ic),
                          f"    static const cmsis_nn_conv_params cp = {{{-tin.zp}, {tout.zp}, {{{sx}, {sy}}}, "
                          f"{{{pl}, {pt}}}, {{1, 1}}, {{{qmin}, {qmax}}}}};\n",
                          f"    if (arm_convolve_wrapper_s8_get_buffer_size(&cp, &in, &fd, &outd) > ctx.size) return -{li + 1};\n"]
                    fn = kernel = "arm_convolve_wrapper_s8"
                else:
                    _, kh, kw, _ = w.shape
                    s += [_dims("fd", 1, kh, kw, oc),
                          f"    static const cmsis_nn_dw_conv_params cp = {{{-tin.zp}, {tout.zp}, {oc // ic}, "
                          f"{{{sx}, {sy}}}, {{{pl}, {pt}}}, {{1, 1}}, {{{qmin}, {qmax}}}}};\n",
                          f"    if (arm_depthwise_conv_wrapper_s8_get_buffer_size(&cp, &in, &fd, &outd) > ctx.size) return -{li + 1};\n"]
                    fn = kernel = "arm_depthwise_conv_wrapper_s8"
            s.append(f"    if ({fn}(&ctx, &cp, &q, &in, {src}, &fd, {p}w, &bd, {p}b, &outd, {dst}) != ARM_CMSIS_NN_SUCCESS) "
                     f"return -{li + 1};\n")
        elif op.kind in ("avgpool", "maxpool"):
            fh, fw = o["filter"]
            sy, sx = o["stride"]
            pt, _, pl, _ = o["pad"]
            s += [_dims("in", 1, ih, iw, ic), _dims("outd", 1, oh, ow, oc), _dims("fd", 1, fh, fw, 1),
                  f"    static const cmsis_nn_pool_params pp = {{{{{sx}, {sy}}}, {{{pl}, {pt}}}, {{{qmin}, {qmax}}}}};\n",
                  ctx]
            fn = kernel = "arm_avgpool_s8" if op.kind == "avgpool" else "arm_max_pool_s8"
            if op.kind == "avgpool":
                s.append(f"    if (arm_avgpool_s8_get_buffer_size({ow}, {ic}) > ctx.size) return -{li + 1};\n")
            s.append(f"    if ({fn}(&ctx, &pp, &in, {src}, &fd, &outd, {dst}) != ARM_CMSIS_NN_SUCCESS) return -{li + 1};\n")
        elif op.kind == "add":
            t2 = T[op.inputs[1]]
            a = o.get("_add") or K.add_params(tin.scale[0], t2.scale[0], tout.scale[0])
            src2 = _ptr(plan, op.inputs[1], True)
            n = int(np.prod(tout.shape))
            kernel = "arm_elementwise_add_s8"
            s.append(f"    if (arm_elementwise_add_s8({src}, {src2}, {-tin.zp}, {a['m1']}, {a['s1']}, {-t2.zp}, {a['m2']}, "
                     f"{a['s2']}, {a['left_shift']}, {dst}, {tout.zp}, {a['mo']}, {a['so']}, {qmin}, {qmax}, {n}) "
                     f"!= ARM_CMSIS_NN_SUCCESS) return -{li + 1};\n")
        elif op.kind == "softmax":
            sm = o.get("_sm") or K.softmax_params(tin.scale[0], o.get("beta", 1.0))
            row = int(tin.shape[-1])
            rows = int(np.prod(tin.shape)) // row
            kernel = "arm_softmax_s8"
            s.append(f"    arm_softmax_s8({src}, {rows}, {row}, {sm['multiplier']}, {sm['left_shift']}, "
                     f"{sm['diff_min']}, {dst});\n")
        s.append("    }\n")
        body += s
        layers.append({"name": f"{op.kind}_{li}", "op": op.kind, "kernel": kernel, "macs": _macs(im, op),
                       "in_shape": list(tin.shape), "out_shape": list(tout.shape)})
        li += 1
    nl = li
    body.append(f"    TKWS_LAYER_MARK({nl});\n    return 0;\n")

    tin, tout = T[im.input], T[im.output]
    labels = _labels(im)
    out_dir = prepare_out_dir(out_dir, overwrite)
    header = f"""/* {name}: generated by tinykws (CMSIS-NN back end). */
#ifndef TKWS_MODEL_H
#define TKWS_MODEL_H
#include <stdint.h>

#define TKWS_INPUT_SIZE {int(np.prod(tin.shape))}
#define TKWS_OUTPUT_SIZE {int(np.prod(tout.shape))}
#define TKWS_ARENA_SIZE {max(plan.arena_bytes, 4)}
#define TKWS_NUM_LAYERS {nl}
#define TKWS_NUM_LABELS {len(labels)}
#define TKWS_ALIGNED(n) __attribute__((aligned(n)))

#ifdef TKWS_PROFILE
void tkws_layer_mark(int i);
#define TKWS_LAYER_MARK(i) tkws_layer_mark(i)
#else
#define TKWS_LAYER_MARK(i) ((void)0)
#endif

int tkws_invoke(const int8_t *input, int8_t *output); /* 0 on success */
extern const float tkws_input_scale, tkws_output_scale;
extern const int32_t tkws_input_zero_point, tkws_output_zero_point;
extern const char *const tkws_labels[];
#endif
"""
    lab = ", ".join(c_string(str(x)) for x in labels)
    source = (f"/* {name}: generated by tinykws; calls CMSIS-NN. Memory plan: arena {plan.arena_bytes} bytes. */\n"
              '#include "model.h"\n#include "arm_nnfunctions.h"\n\n'
              f"const float tkws_input_scale = {c_float(tin.scale[0])};\n"
              f"const float tkws_output_scale = {c_float(tout.scale[0])};\n"
              f"const int32_t tkws_input_zero_point = {tin.zp};\n"
              f"const int32_t tkws_output_zero_point = {tout.zp};\n"
              f"const char *const tkws_labels[] = {{{lab}}};\n\n"
              "static int8_t tkws_arena[TKWS_ARENA_SIZE] __attribute__((aligned(8)));\n\n"
              "__attribute__((noinline, weak)) void tkws_layer_mark(int i) { (void)i; __asm volatile(\"\" ::: \"memory\"); }\n\n"
              + "".join(consts) +
              "\nint tkws_invoke(const int8_t *input, int8_t *output)\n{\n" + "".join(body) + "}\n")
    rel = [str(f) for f in sources]
    makefile = f"""# {name}: CMSIS-NN back end. make host (gcc) | make m7 (arm-none-eabi-gcc); CMSIS_DIR=... to use another checkout
CMSIS_DIR ?= {cmsis_dir}
OPT ?= -O2
CC ?= gcc
M7_CC ?= arm-none-eabi-gcc
M7_FLAGS ?= -mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard -mthumb
SRCS = model.c {' '.join('$(CMSIS_DIR)/' + str(Path(f).relative_to(cmsis_dir)) for f in rel)}
INC = -I. -I$(CMSIS_DIR)/Include
CFLAGS = -std=c99 $(OPT) -Wall -ffunction-sections -fdata-sections $(CFLAGS_EXTRA)

host: build/host/tkws_run
build/host/tkws_run: host_main.c $(SRCS) model.h
\tmkdir -p build/host
\t$(CC) $(CFLAGS) $(INC) host_main.c $(SRCS) -o $@ -Wl,--gc-sections

m7: build/m7/model.a
build/m7/model.a: $(SRCS) model.h
\tmkdir -p build/m7/obj
\tfor f in $(SRCS); do $(M7_CC) $(M7_FLAGS) $(CFLAGS) $(INC) -c $$f -o build/m7/obj/$$(basename $$f .c).o || exit 1; done
\tarm-none-eabi-ar rcs $@ build/m7/obj/*.o

clean:
\trm -rf build
.PHONY: host m7 clean
"""
    host_main = """/* Host harness: raw int8 inputs on stdin (TKWS_INPUT_SIZE bytes each), int8 outputs on stdout. */
#include <stdio.h>
#include "model.h"

int main(void)
{
    static int8_t in[TKWS_INPUT_SIZE], out[TKWS_OUTPUT_SIZE];
    while (fread(in, 1, sizeof in, stdin) == sizeof in) {
        int rc = tkws_invoke(in, out);
        if (rc != 0) {
            fprintf(stderr, "tkws_invoke: %d\\n", rc);
            return 1;
        }
        fwrite(out, 1, sizeof out, stdout);
    }
    return 0;
}
"""
    readme = f"""# {name} (CMSIS-NN back end)

Generated by tinykws: `model.c` calls CMSIS-NN from `CMSIS_DIR` ({cmsis_dir}).
Add `model.c`, the CMSIS-NN sources in the Makefile's `SRCS` and `$(CMSIS_DIR)/Include` to a firmware
project; call `tkws_invoke(input, output)` with `TKWS_INPUT_SIZE` int8 inputs. Arena: {plan.arena_bytes} bytes
(static, inside model.c). `make host` builds a stdin/stdout harness with gcc.
"""
    files = {"model.h": header, "model.c": source, "Makefile": makefile, "host_main.c": host_main, "README.md": readme,
             "build.json": json.dumps({"sources": ["model.c"] + rel, "include_dirs": [".", str(cmsis_dir / "Include")],
                                        "kernel_dirs": [str(cmsis_dir)], "backend": "cmsis-nn"}, indent=1)}
    written = []
    for fn, text in files.items():
        (out_dir / fn).write_text(text)
        written.append(out_dir / fn)
    return CmsisModel(out_dir, layers, plan, written, sources)
