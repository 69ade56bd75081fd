"""Code generation: an IntModel as a self-contained C99 project.

`generate(im, out_dir)` writes model.h (the interface), model.c (constant weights, biases and
requantization parameters, one static arena laid out by the memory planner, `tkws_invoke`), the
tinykws kernel sources, a Makefile (host gcc and Cortex-M7 targets), host_main.c (the host
harness: int8 inputs on stdin, outputs on stdout) and a README. No malloc, no float in the
network path; `TKWS_LAYER_MARK(i)` before each layer and after the last.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..outputs import check_output_dir, prepare_output_dir
from . import DeployError
from .ops import CArray, Layer, build_layers
from .plan import ARENA, INPUT, OUTPUT, MemoryPlan, plan_memory

CSRC = Path(__file__).resolve().parent / "csrc"
M7_FLAGS = "-mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard -mthumb"


@dataclass
class GeneratedModel:
    out_dir: Path
    layers: list[dict]  # {name, op, kernel, macs, in_shape, out_shape} per emitted layer (views left out)
    plan: MemoryPlan
    files: list[Path]
    kernels: str
    loop_order: str
    const_bytes: int  # bytes of the emitted constant arrays (weights, biases, requantization)
    sources: list[str] = field(default_factory=list)  # the .c files of the project (host_main.c aside)

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "kernels": self.kernels, "loop_order": self.loop_order,
                "const_bytes": self.const_bytes, "layers": self.layers, "plan": self.plan.to_dict(),
                "files": [str(f) for f in self.files]}


# ---------------------------------------------------------------------------- output folder

def prepare_out_dir(path: str | Path, overwrite: bool = False, create: bool = True, inputs=()) -> Path:
    """A folder to write a project into, by the rules of `tinykws.outputs`: new or empty; with
    overwrite, a folder tinykws wrote (its `.tinykws` marker) is replaced; never the current folder,
    its parents, home or an input. create=False only checks."""
    if not create:
        check_output_dir(path, overwrite, inputs)
        return Path(path)
    return prepare_output_dir(path, overwrite, inputs)


# ---------------------------------------------------------------------------- C text helpers

def c_array(name: str, arr: CArray, per_line: int = 20) -> str:
    v = np.asarray(arr.values).reshape(-1)
    body = ",\n".join("    " + ", ".join(str(int(x)) for x in v[i : i + per_line]) for i in range(0, len(v), per_line))
    note = f"  /* {arr.comment} */" if arr.comment else ""
    return f"static const {arr.ctype} {name}[{len(v)}] TKWS_ALIGNED(4) = {{{note}\n{body}\n}};\n"


def c_ident(text: str) -> str:
    return re.sub(r"\W", "_", text)


def c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def c_value(v) -> str:
    if isinstance(v, (tuple, list)):
        return "{" + ", ".join(c_value(x) for x in v) + "}"
    return str(int(v))


def c_float(f: float) -> str:
    return f"{float(np.float32(f))!r}f"


# ---------------------------------------------------------------------------- generation

def kernel_sources(layers: list[Layer]) -> list[Path]:
    """The kernel library files to copy: every header and C file of the package's csrc."""
    if not CSRC.is_dir():
        raise DeployError(f"the kernel library is missing from the installation ({CSRC})")
    return sorted(p for p in CSRC.iterdir() if p.suffix in (".c", ".h"))


def generate(im, out_dir: str | Path, kernels: str = "fast", loop_order: str = "input", name: str = "tkws",
             overwrite: bool = False, labels: list[str] | None = None, specialize: bool = True,
             sparse: str = "off", pack_weights: str = "auto") -> GeneratedModel:
    """Write the C project of `im` into `out_dir` (new, empty, or written by tinykws with overwrite).

    specialize: each layer whose kernel has an inline body (the fast variants) gets its own instance
    of it in model.c, with the layer's params struct as a compile-time constant, so the compiler
    folds every shape, offset and loop bound (more flash, fewer instructions); False: every layer
    calls the library's generic function. sparse: off (dense kernels) | auto | on: pointwise layers
    may get the sparse kernels (kernels.select; each such layer's `kernel_choice` says why).
    pack_weights: auto (conv, depthwise and fc layers whose weights all fit 4 or 2 signed bits, e.g. after QAT
    at those widths, get kernels reading them packed 2 or 4 per byte; int8-range weights keep their
    kernels, so int8 models are unchanged) | off (int8 weights everywhere)."""
    layers = build_layers(im, kernels, loop_order, sparse, pack_weights)
    plan = plan_memory(im, scratch={l.op_index: l.scratch_bytes for l in layers},
                       in_place={(l.op_index, t) for l in layers for t in l.in_place_inputs})
    srcs = kernel_sources(layers)
    out = prepare_out_dir(out_dir, overwrite)
    files = []
    for p in srcs:
        shutil.copy2(p, out / p.name)
        files.append(out / p.name)
    c_files = ["model.c"] + [p.name for p in srcs if p.suffix == ".c"]
    labels = labels or im.meta.get("labels") or [f"class{i}" for i in range(int(np.prod(im.tensors[im.output].shape)))]
    emitted = [l for l in layers if not l.view]
    model_c, const_bytes = _model_c(im, layers, plan, labels, name, kernels, loop_order, specialize)
    texts = {"model.h": _model_h(im, plan, emitted, labels, name),
             "model.c": model_c,
             "host_main.c": HOST_MAIN,
             "Makefile": _makefile(c_files, name),
             "README.md": _readme(im, plan, emitted, name, kernels, loop_order, const_bytes)}
    for fname, text in texts.items():
        (out / fname).write_text(text)
        files.append(out / fname)
    return GeneratedModel(out, [l.to_dict() for l in emitted], plan, files, kernels, loop_order, const_bytes, c_files)


def _ptr(plan: MemoryPlan, t: int) -> str:
    where, off = plan.location(t)
    if where == INPUT:
        return "input"
    if where == OUTPUT:
        return "output"
    return f"&tkws_arena[{off}]"


def _model_h(im, plan: MemoryPlan, emitted: list[Layer], labels, name) -> str:
    tin, tout = im.tensors[im.input], im.tensors[im.output]
    return f"""/* {name}: generated by tinykws deploy. The network's interface. */
#ifndef TKWS_MODEL_H
#define TKWS_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define TKWS_INPUT_SIZE {int(np.prod(tin.shape))}   /* bytes: int8 input, shape {'x'.join(map(str, tin.shape[1:]))} (NHWC) */
#define TKWS_OUTPUT_SIZE {int(np.prod(tout.shape))}  /* bytes: int8 output, shape {'x'.join(map(str, tout.shape[1:]))} */
#define TKWS_ARENA_SIZE {max(plan.arena_bytes, 4)}   /* bytes of the static activation arena in model.c */
#define TKWS_NUM_LAYERS {len(emitted)}
#define TKWS_NUM_LABELS {len(labels)}

/* Runs the network on one int8 input (TKWS_INPUT_SIZE bytes, quantized with tkws_input_scale and
   tkws_input_zero_point) and writes TKWS_OUTPUT_SIZE int8 outputs. Input and output must not
   overlap. Not reentrant (one static arena). Returns 0 on success. */
int tkws_invoke(const int8_t *input, int8_t *output);

/* Quantization of the input and output: real = scale * (q - zero_point). Metadata for the
   caller; the network itself uses integers only. */
extern const float tkws_input_scale, tkws_output_scale;
extern const int32_t tkws_input_zero_point, tkws_output_zero_point;
extern const char *const tkws_labels[TKWS_NUM_LABELS];

/* Called before each layer and after the last (i = 0..TKWS_NUM_LAYERS) when TKWS_PROFILE is
   defined; a weak empty function in model.c: define your own to time layers. */
void tkws_layer_mark(int i);
#ifdef TKWS_PROFILE
#define TKWS_LAYER_MARK(i) tkws_layer_mark(i)
#else
#define TKWS_LAYER_MARK(i) ((void)0)
#endif

#ifdef __cplusplus
}}
#endif
#endif /* TKWS_MODEL_H */
"""


RQ_NAMES = {0: "TKWS_RQ_EXACT", 1: "TKWS_RQ_FAST", 2: "TKWS_RQ_FULL"}
CONV_ROLES = ("params", "in", "w", "bias", "mult", "shift", "out", "scratch")


def _specialized(l: Layer, pre: str) -> tuple[str, str] | None:
    """(header, C function) of a layer's own instance of its kernel's inline body, or None."""
    v = l.variant
    if v is None or not v.body or tuple(l.args) != CONV_ROLES:
        return None
    mode = RQ_NAMES[int(l.params.get("requant", 0))]
    fn = (f"static TKWS_NOINLINE {v.body_attr + ' ' if v.body_attr else ''}void {pre}_run(const int8_t *in, int8_t *out, "
          f"void *scratch)\n"
          f"{{\n    {v.body}(&{pre}_params, in, {pre}_w, {pre}_bias, {pre}_mult, {pre}_shift, out, scratch, {mode});\n}}\n")
    return v.body_header, fn


def _model_c(im, layers: list[Layer], plan: MemoryPlan, labels, name, kernels, loop_order,
             specialize: bool = True) -> tuple[str, int]:
    tin, tout = im.tensors[im.input], im.tensors[im.output]
    consts, params, body = [], [], []
    spec_headers, spec_fns = [], []
    const_bytes = 0
    i = 0
    for l in layers:
        if l.view:
            continue
        pre = f"tkws_l{i}"
        for role, arr in l.arrays.items():
            consts.append(c_array(f"{pre}_{role}", arr))
            const_bytes += arr.nbytes
        if l.struct:
            fields = ",\n".join(f"    .{k} = {c_value(v)}" for k, v in l.params.items())
            params.append(f"static const {l.struct} {pre}_params = {{\n{fields}\n}};\n")
        args = []
        for a in l.args:
            if a == "params":
                args.append(f"&{pre}_params")
            elif a == "in":
                args.append(_ptr(plan, l.inputs[0]))
            elif a == "in2":
                args.append(_ptr(plan, l.inputs[1]))
            elif a == "out":
                args.append(_ptr(plan, l.output))
            elif a == "scratch":
                args.append(f"&tkws_arena[{plan.scratch_offsets[l.op_index]}]" if l.op_index in plan.scratch_offsets
                            else "0")
            elif a in l.arrays:
                args.append(f"{pre}_{a}")
            else:
                args.append(a)  # a literal
        in_place = " (in place)" if any(k == l.op_index for k, _ in plan.in_place) else ""
        spec = _specialized(l, pre) if specialize else None
        if spec:
            if spec[0] not in spec_headers:
                spec_headers.append(spec[0])
            spec_fns.append(spec[1])
            call = f"{pre}_run({args[1]}, {args[6]}, {args[7]}); /* specialized {l.kernel} */"
        else:
            call = f"{l.kernel}({', '.join(args)});"
        body.append(f"    TKWS_LAYER_MARK({i});\n    /* {i}: {l.kind} {c_comment(l.name)} "
                    f"{'x'.join(map(str, l.in_shape[1:]))} -> {'x'.join(map(str, l.out_shape[1:]))}{in_place} */\n"
                    f"    {call}\n")
        i += 1
    where_out = plan.where[im.output]
    if where_out != OUTPUT:
        src = "input" if where_out == INPUT else f"&tkws_arena[{plan.offsets[im.output]}]"
        body.append(f"    memcpy(output, {src}, TKWS_OUTPUT_SIZE);\n")
    body.append(f"    TKWS_LAYER_MARK({i});\n")
    label_text = ", ".join(c_string(s) for s in labels)
    uses_input = "" if any(plan.where.get(t) == INPUT for l in layers if not l.view for t in l.inputs) \
        or where_out == INPUT else "    (void)input;\n"
    text = f"""/* {name}: generated by tinykws deploy ({kernels} kernels, {loop_order}-prioritized loop order).
   {len([l for l in layers if not l.view])} layers, {sum(l.macs for l in layers):,} MACs, {const_bytes:,} bytes of constants,
   activation arena {plan.arena_bytes:,} bytes. */
#include <string.h>
#include "model.h"
#include "tkws_nn.h"
{''.join(f'#include "{h}"' + chr(10) for h in spec_headers)}
#if defined(__GNUC__)
#define TKWS_ALIGNED(n) __attribute__((aligned(n)))
#define TKWS_NOINLINE __attribute__((noinline)) /* each layer's instance gets its own register allocation */
#else
#define TKWS_ALIGNED(n)
#define TKWS_NOINLINE
#endif

const float tkws_input_scale = {c_float(tin.scale[0])};
const int32_t tkws_input_zero_point = {tin.zp};
const float tkws_output_scale = {c_float(tout.scale[0])};
const int32_t tkws_output_zero_point = {tout.zp};
const char *const tkws_labels[TKWS_NUM_LABELS] = {{{label_text}}};

/* Activations: one static arena; offsets from the memory planner:
{_indent_comment(plan.table())}
*/
static int8_t tkws_arena[TKWS_ARENA_SIZE] TKWS_ALIGNED(8);

{''.join(consts)}
{''.join(params)}
{chr(10).join(spec_fns)}
__attribute__((noinline, weak)) void tkws_layer_mark(int i) {{ (void)i; }}

int tkws_invoke(const int8_t *input, int8_t *output)
{{
{uses_input}{''.join(body)}    return 0;
}}
"""
    return text, const_bytes


def c_comment(s: str) -> str:
    return s.replace("*/", "* /")


def _indent_comment(text: str) -> str:
    return "\n".join("   " + c_comment(line) for line in text.splitlines())


def _makefile(c_files: list[str], name: str) -> str:
    srcs = " ".join(c_files)
    return f"""# {name}: generated by tinykws deploy.
#   make host   gcc on this machine: build/host/tkws_run (int8 inputs on stdin, outputs on stdout)
#   make m7     arm-none-eabi-gcc for Cortex-M7: build/m7/libtkws.a to link into a firmware
# OPT=-Os (or -O3) changes the optimization; CFLAGS_EXTRA adds flags.

SRCS = {srcs}
HDRS = $(wildcard *.h)
OPT ?= -O2
CC = gcc
CFLAGS = -std=c99 -Wall -Wextra $(OPT) -I. $(CFLAGS_EXTRA)

M7_CC = arm-none-eabi-gcc
M7_AR = arm-none-eabi-ar
M7_FLAGS = {M7_FLAGS}
M7_CFLAGS = -std=c99 -Wall -Wextra $(OPT) $(M7_FLAGS) -ffunction-sections -fdata-sections -I. $(CFLAGS_EXTRA)
M7_OBJS = $(SRCS:%.c=build/m7/%.o)

.PHONY: all host m7 clean
all: host

host: build/host/tkws_run

build/host/tkws_run: $(SRCS) host_main.c $(HDRS)
\t@mkdir -p build/host
\t$(CC) $(CFLAGS) -o $@ $(SRCS) host_main.c

m7: build/m7/libtkws.a

build/m7/%.o: %.c $(HDRS)
\t@mkdir -p build/m7
\t$(M7_CC) $(M7_CFLAGS) -c $< -o $@

build/m7/libtkws.a: $(M7_OBJS)
\t$(M7_AR) rcs $@ $^

clean:
\trm -rf build
"""


HOST_MAIN = """/* Host harness: reads int8 inputs (TKWS_INPUT_SIZE bytes each) from stdin until it ends, runs
   the network on each and writes its TKWS_OUTPUT_SIZE int8 outputs to stdout. */
#include <stdio.h>
#include "model.h"

int main(void)
{
    static int8_t in[TKWS_INPUT_SIZE], out[TKWS_OUTPUT_SIZE];
    while (fread(in, 1, sizeof in, stdin) == sizeof in) {
        if (tkws_invoke(in, out) != 0)
            return 1;
        if (fwrite(out, 1, sizeof out, stdout) != sizeof out)
            return 1;
    }
    return 0;
}
"""


def _readme(im, plan: MemoryPlan, emitted: list[Layer], name, kernels, loop_order, const_bytes) -> str:
    tin, tout = im.tensors[im.input], im.tensors[im.output]
    rows = "\n".join(f"| {i} | {l.kind} | `{l.kernel}` | {'x'.join(map(str, l.in_shape[1:]))} | "
                     f"{'x'.join(map(str, l.out_shape[1:]))} | {l.macs:,} |" for i, l in enumerate(emitted))
    return f"""# {name}: a keyword-spotting network in C

Generated by `tinykws deploy` ({kernels} kernels, {loop_order}-prioritized loop order). C99, no
malloc, no floating point in the network: int8 activations in one static arena of
{plan.arena_bytes:,} bytes, {const_bytes:,} bytes of constant weights, biases and requantization
parameters (flash).

## Use it in a firmware project

1. Copy every `.c` and `.h` file of this folder except `host_main.c` into your project (or run
   `make m7` and link `build/m7/libtkws.a`); compile with C99 and your usual flags, e.g.
   `{M7_FLAGS} -O2`. The DSP extension paths (`__ARM_FEATURE_DSP`) switch on by themselves on
   cores that have it (Cortex-M4/M7/M33 and later).
2. Quantize the features: `q = round(x / tkws_input_scale) + tkws_input_zero_point`, clamped to
   [-128, 127], {int(np.prod(tin.shape))} values in the order of the input shape
   {'x'.join(map(str, tin.shape[1:]))} (NHWC: frames, coefficients, channel).
3. Call `tkws_invoke(input, output)`; `output` holds {int(np.prod(tout.shape))} int8 scores
   (`tkws_labels[i]` names each; real score = `tkws_output_scale * (q - tkws_output_zero_point)`).

`tkws_invoke` uses a static arena, so it is not reentrant; input and output must not overlap.
Define `TKWS_PROFILE` and your own `void tkws_layer_mark(int i)` to time each layer (called before
layer i and with i = {len(emitted)} at the end).

## Build and check on a PC

`make host` builds `build/host/tkws_run`, which reads int8 inputs from stdin and writes the outputs
to stdout; `tinykws deploy` runs it against the integer reference. `make m7` builds the Cortex-M7
library with arm-none-eabi-gcc. `OPT=-Os` (default `-O2`) changes the optimization.

## Layers

| # | op | kernel | input | output | MACs |
|---|---|---|---|---|---|
{rows}

## Memory plan

```
{plan.table()}
```
"""


# ---------------------------------------------------------------------------- sizes
