"""Build a generated project for a Cortex-M7 and run it on an emulated one (unicorn).

`build_m7` compiles the project's C sources with arm-none-eabi-gcc together with the start-up
code, linker script (STM32F746-like map: 1 MB flash at 0x08000000, 320 KB SRAM at 0x20000000)
and bare-metal harness of `mcu_support/`, and writes a linker map. `run_m7` loads the ELF's
segments into unicorn's Cortex-M7 model, writes each input to `tkws_mcu_input`, runs from the
reset handler (FPU enabled, .data copied, .bss zeroed) until `tkws_mcu_done`, and reads
`tkws_mcu_output`.

Instructions are counted per executed translation block (UC_HOOK_BLOCK): every instruction of
each executed block, its count taken from the block's bytes (Thumb-2 lengths: a halfword whose
top five bits are 0b11101, 0b11110 or 0b11111 starts a 32-bit instruction). Instructions that an
IT block skips are counted too (Arm's "architecturally executed" count does the same; unicorn's
per-instruction hook misses them). `instructions` is the network path, from the first
`tkws_layer_mark` call to the last; unicorn has no cycle model, so milliseconds are estimates.

    elf = build_m7("out/kws", opt="O2")
    r = run_m7(elf, x)            # x: (B, ...) int8
    r.outputs, r.instructions, r.layer_instructions, r.stack_bytes, r.flash_bytes, r.ram_bytes
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SUPPORT = Path(__file__).parent / "mcu_support"
M7_FLAGS = ["-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard", "-mthumb"]
# gcc 12 has no -mcpu=cortex-m7+nodsp: without DSP, the DSP source paths (CMSIS-NN's ARM_MATH_DSP,
# tinykws's __ARM_FEATURE_DSP) are turned off by undefining the feature macro
M7_NODSP = "-U__ARM_FEATURE_DSP"
OPTS = ("O2", "Os", "O3")
PAINT = 0xA5A5A5A5
MAX_INSTRUCTIONS = 2_000_000_000


class McuError(ValueError):
    """The toolchain or emulator is missing, a build failed, or a run went wrong."""


@dataclass
class McuResult:
    outputs: np.ndarray  # (B, OUTPUT_SIZE) int8
    instructions: int  # network path (first to last tkws_layer_mark), first input
    instructions_each: list[int]  # per input
    layer_instructions: list[int]  # between consecutive tkws_layer_mark calls, first input
    total_instructions: int  # from reset to tkws_mcu_done, first input
    stack_bytes: int  # painted-stack high-water mark, the most over all inputs
    flash_bytes: int
    flash: dict  # model / kernels / other
    ram_bytes: int  # arena + stack high-water mark + other static data
    ram: dict  # arena / stack / other
    status: list[int] = field(default_factory=list)  # tkws_invoke's return value per input
    counting: str = "every instruction of each executed block (UC_HOOK_BLOCK), IT-skipped included"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outputs"] = self.outputs.tolist()
        return d


def _need_gcc(cc: str = "arm-none-eabi-gcc") -> str:
    path = shutil.which(cc)
    if path is None:
        raise McuError(f"{cc} not found on PATH: install the Arm GNU toolchain "
                       "(apt install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    return path


def _need_unicorn():
    try:
        import unicorn  # noqa: F401
        from elftools.elf.elffile import ELFFile  # noqa: F401
    except ImportError as exc:
        raise McuError(f"the Cortex-M7 emulator needs the Python packages unicorn and pyelftools ({exc.name} is missing)")
    return unicorn


def _sources(project: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(C sources, include dirs, kernel dirs) of a generated project; build.json overrides the default."""
    spec = project / "build.json"
    if spec.is_file():
        d = json.loads(spec.read_text())
        src = [(project / s) if not Path(s).is_absolute() else Path(s) for s in d["sources"]]
        inc = [(project / s) if not Path(s).is_absolute() else Path(s) for s in d.get("include_dirs", ["."])]
        kdirs = [Path(s) if Path(s).is_absolute() else project / s for s in d.get("kernel_dirs", [])]
        return src, inc, kdirs
    src = sorted(p for p in project.rglob("*.c")
                 if "build" not in p.relative_to(project).parts and not p.name.startswith("host_"))
    inc = sorted({p.parent for p in project.rglob("*.h") if "build" not in p.relative_to(project).parts}) or [project]
    return src, inc, []


def build_m7(project_dir: str | Path, opt: str = "O2", dsp: bool = True, profile: bool = True,
             cc: str = "arm-none-eabi-gcc", out: str | Path | None = None) -> Path:
    """Compile and link the project for a Cortex-M7 (newlib-nano, no semihosting); returns the ELF.

    opt: O2 | Os | O3; dsp=False undefines __ARM_FEATURE_DSP (the DSP source paths are off);
    profile defines TKWS_PROFILE so model.c calls tkws_layer_mark between layers.
    """
    project = Path(project_dir)
    opt = opt.lstrip("-")
    if opt not in OPTS:
        raise McuError(f"--opt {opt!r}: use one of {', '.join(OPTS)}")
    if not (project / "model.h").is_file():
        raise McuError(f"{project}: no model.h (not a generated project)")
    _need_gcc(cc)
    build = Path(out) if out else project / "build" / f"m7-{opt}{'' if dsp else '-nodsp'}"
    objdir = build / "obj"
    objdir.mkdir(parents=True, exist_ok=True)
    srcs, incs, _ = _sources(project)
    srcs += [SUPPORT / "startup_m7.c", SUPPORT / "harness_m7.c"]
    flags = M7_FLAGS + ([] if dsp else [M7_NODSP]) + [
        f"-{opt}", "-std=c99", "-ffunction-sections", "-fdata-sections", "-g0", "-DTKWS_MCU=1"]
    if profile:
        flags.append("-DTKWS_PROFILE=1")
    flags += [f"-I{d}" for d in incs]
    objs, seen, kinds = [], {}, {}
    for s in srcs:
        stem = s.stem
        seen[stem] = seen.get(stem, 0) + 1
        o = objdir / (f"{stem}.o" if seen[stem] == 1 else f"{stem}_{seen[stem]}.o")
        r = subprocess.run([cc, *flags, "-c", str(s), "-o", str(o)], capture_output=True, text=True)
        if r.returncode != 0:
            first = next((l for l in r.stderr.splitlines() if "error" in l), r.stderr.strip()[:300])
            raise McuError(f"{s}: Cortex-M7 compile failed: {first}")
        objs.append(o)
        kinds[o.name] = ("model" if s.name == "model.c" else "other" if s.parent == SUPPORT else "kernels")
    (build / "objects.json").write_text(json.dumps(kinds, indent=1))
    elf = build / "tkws_m7.elf"
    link = [cc, *flags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs", f"-T{SUPPORT / 'm7.ld'}",
            "-Wl,--gc-sections", f"-Wl,-Map={build / 'tkws_m7.map'}", *map(str, objs), "-o", str(elf)]
    r = subprocess.run(link, capture_output=True, text=True)
    if r.returncode != 0:
        first = next((l for l in r.stderr.splitlines() if "error" in l or "undefined" in l), r.stderr.strip()[:300])
        raise McuError(f"{project}: Cortex-M7 link failed: {first}")
    return elf


# ---------------------------------------------------------------------------- sizes

_MAP_LINE = re.compile(r"^ (\.[\w.$-]+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$")


def map_sections(map_path: str | Path) -> list[tuple[str, int, int, str]]:
    """(input section, address, bytes, object file) of every linked input section of a GNU ld map."""
    rows, pending = [], None
    text = Path(map_path).read_text(errors="replace")
    body = text.split("Linker script and memory map", 1)[-1]
    for line in body.splitlines():
        if re.match(r"^ \.[\w.$-]+$", line):
            pending = line.strip()
            continue
        m = _MAP_LINE.match(line)
        if m and (m.group(1) or pending):
            name = m.group(1) or pending
            size = int(m.group(3), 16)
            if size:
                rows.append((name, int(m.group(2), 16), size, m.group(4)))
        pending = None
    return rows


def _classify(obj: str, kinds: dict[str, str]) -> str:
    return kinds.get(Path(obj.split("(")[0]).name, "other")


def sizes(elf: str | Path) -> dict:
    """Flash (text + rodata + data init) and static RAM of a build_m7 ELF, split by object file:
    model (model.o: weights, biases, requantization arrays and the layer calls), kernels (the
    kernel library's objects), other (start-up, harness, libc); RAM: arena, other .data/.bss."""
    elf = Path(elf)
    build = elf.parent
    kinds = json.loads((build / "objects.json").read_text())
    flash = {"model": 0, "kernels": 0, "other": 0}
    ram_static = 0
    model_code = 0
    for name, addr, size, obj in map_sections(build / "tkws_m7.map"):
        part = _classify(obj, kinds)
        if 0x08000000 <= addr < 0x10000000:
            if part == "model" and name.startswith(".text"):
                model_code += size
            flash[part] += size
        elif 0x20000000 <= addr < 0x30000000:
            if name.startswith(".data"):
                flash[part] += size
            if not name.startswith(".noinit"):
                ram_static += size
    syms = _symbols(elf)
    arena = syms.get("tkws_arena", (0, 0))[1]
    flash["model_code"] = model_code
    return {"flash_bytes": flash["model"] + flash["kernels"] + flash["other"], "flash": flash,
            "arena_bytes": arena, "static_ram_bytes": ram_static, "other_ram_bytes": ram_static - arena}


def _symbols(elf: Path) -> dict[str, tuple[int, int]]:
    from elftools.elf.elffile import ELFFile

    out = {}
    with open(elf, "rb") as f:
        for sym in ELFFile(f).get_section_by_name(".symtab").iter_symbols():
            if sym.name and sym["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
                out.setdefault(sym.name, (int(sym["st_value"]), int(sym["st_size"])))
    return out


# ---------------------------------------------------------------------------- emulation

def _thumb_count(code: bytes) -> int:
    """Number of Thumb/Thumb-2 instructions in a block's bytes."""
    n, i, end = 0, 0, len(code) - 1
    while i < end:
        hw = code[i] | (code[i + 1] << 8)
        i += 4 if (hw >> 11) in (0b11101, 0b11110, 0b11111) else 2
        n += 1
    return n


class _Emulator:
    def __init__(self, elf: Path):
        uc_mod = _need_unicorn()
        from elftools.elf.elffile import ELFFile
        from unicorn import Uc, UC_ARCH_ARM, UC_MODE_MCLASS, UC_MODE_THUMB, UC_HOOK_BLOCK, UC_HOOK_CODE
        from unicorn.arm_const import UC_CPU_ARM_CORTEX_M7

        self.uc_mod = uc_mod
        self.syms = _symbols(elf)
        for s in ("Reset_Handler", "tkws_mcu_done", "tkws_mcu_input", "tkws_mcu_output", "_sstack", "_estack"):
            if s not in self.syms:
                raise McuError(f"{elf}: no symbol {s} (not built by build_m7)")
        uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M7)
        uc.mem_map(0x08000000, 1024 * 1024)
        uc.mem_map(0x20000000, 320 * 1024)
        uc.mem_map(0xE0000000, 0x100000)  # private peripheral bus (SCB: CPACR writes land here)
        self.segments = []
        with open(elf, "rb") as f:
            for seg in ELFFile(f).iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]:
                    data = seg.data()
                    uc.mem_write(int(seg["p_paddr"]), data)
                    self.segments.append((int(seg["p_paddr"]), data))
        self.uc = uc
        self.blocks: dict[int, int] = {}
        self.count = 0
        self.marks: list[int] = []
        uc.hook_add(UC_HOOK_BLOCK, self._on_block)
        mark = self.syms.get("tkws_layer_mark")
        if mark:
            a = mark[0] & ~1
            uc.hook_add(UC_HOOK_CODE, self._on_mark, begin=a, end=a)

    def _on_block(self, uc, address, size, _):
        n = self.blocks.get(address)
        if n is None:
            n = self.blocks[address] = _thumb_count(bytes(uc.mem_read(address, size)))
        self.count += n

    def _on_mark(self, uc, address, size, _):
        self.marks.append(self.count)

    def run(self, x: bytes) -> tuple[bytes, int, list[int], int, int]:
        from unicorn.arm_const import UC_ARM_REG_SP, UC_ARM_REG_LR

        uc, s = self.uc, self.syms
        for addr, data in self.segments:  # fresh .data image, rodata untouched
            uc.mem_write(addr, data)
        lo, hi = s["_sstack"][0], s["_estack"][0]
        uc.mem_write(lo, PAINT.to_bytes(4, "little") * ((hi - lo) // 4))
        uc.mem_write(s["tkws_mcu_input"][0], x)
        uc.mem_write(s["tkws_mcu_output"][0], b"\0" * s["tkws_mcu_output"][1])
        uc.reg_write(UC_ARM_REG_SP, hi)
        uc.reg_write(UC_ARM_REG_LR, 0xFFFFFFFF)
        self.count, self.marks = 0, []
        done = s["tkws_mcu_done"][0] & ~1
        try:
            uc.emu_start(s["Reset_Handler"][0] | 1, done, count=MAX_INSTRUCTIONS)
        except self.uc_mod.UcError as exc:
            from unicorn.arm_const import UC_ARM_REG_PC
            raise McuError(f"emulated Cortex-M7 stopped at pc=0x{uc.reg_read(UC_ARM_REG_PC):08x}: {exc}")
        from unicorn.arm_const import UC_ARM_REG_PC
        if uc.reg_read(UC_ARM_REG_PC) & ~1 != done:
            raise McuError(f"emulated Cortex-M7 did not reach tkws_mcu_done (pc=0x{uc.reg_read(UC_ARM_REG_PC):08x})")
        out = bytes(uc.mem_read(s["tkws_mcu_output"][0], s["tkws_mcu_output"][1]))
        status = int.from_bytes(uc.mem_read(s["tkws_mcu_status"][0], 4), "little", signed=True)
        stack = bytes(uc.mem_read(lo, hi - lo))
        words = np.frombuffer(stack, np.uint32)
        used = np.nonzero(words != PAINT)[0]
        stack_bytes = int((len(words) - used[0]) * 4) if len(used) else 0
        return out, self.count, list(self.marks), stack_bytes, status


def run_m7(elf: str | Path, inputs: np.ndarray) -> McuResult:
    """Run a build_m7 ELF on int8 inputs (B, ...) on the emulated Cortex-M7; outputs and costs."""
    elf = Path(elf)
    if not elf.is_file():
        raise McuError(f"{elf}: no such ELF (build it with build_m7)")
    emu = _Emulator(elf)
    n_in, n_out = emu.syms["tkws_mcu_input"][1], emu.syms["tkws_mcu_output"][1]
    x = np.ascontiguousarray(inputs, dtype=np.int8).reshape(len(inputs), -1)
    if x.shape[1] != n_in:
        raise McuError(f"{elf}: inputs of {x.shape[1]} bytes, the model takes {n_in}")
    outs, each, status, stack, first = [], [], [], 0, None
    for row in x:
        out, total, marks, st, rc = emu.run(row.tobytes())
        outs.append(np.frombuffer(out, np.int8))
        net = marks[-1] - marks[0] if len(marks) >= 2 else total
        each.append(net)
        status.append(rc)
        stack = max(stack, st)
        if first is None:
            first = (net, [b - a for a, b in zip(marks, marks[1:])], total)
    sz = sizes(elf)
    ram = {"arena": sz["arena_bytes"], "stack": stack, "other": sz["other_ram_bytes"]}
    return McuResult(outputs=np.stack(outs) if outs else np.zeros((0, n_out), np.int8),
                     instructions=first[0] if first else 0, instructions_each=each,
                     layer_instructions=first[1] if first else [], total_instructions=first[2] if first else 0,
                     stack_bytes=stack, flash_bytes=sz["flash_bytes"], flash=sz["flash"],
                     ram_bytes=ram["arena"] + ram["stack"] + ram["other"], ram=ram, status=status)


# ---------------------------------------------------------------------------- one model, one variant

KERNELS = ("ref", "fast", "cmsis-nn")
LOOP_ORDERS = ("input", "weight")
EST_NOTE = "estimate: instructions / clock at one instruction per cycle (unicorn has no cycle model)"


def generate_project(im, out_dir: str | Path, kernels: str = "fast", loop_order: str = "input",
                     cmsis_dir: str | Path | None = None, overwrite: bool = False,
                     pack_weights: str = "auto") -> list[dict]:
    """Generate the C project of one variant (tinykws ref/fast or CMSIS-NN); returns its layers."""
    if kernels not in KERNELS:
        raise McuError(f"--kernels {kernels!r}: use one of {', '.join(KERNELS)}")
    if loop_order not in LOOP_ORDERS:
        raise McuError(f"--loop-order {loop_order!r}: use one of {', '.join(LOOP_ORDERS)}")
    if kernels == "cmsis-nn":
        if not cmsis_dir:
            raise McuError("--kernels cmsis-nn needs a CMSIS-NN folder: pass --cmsis-dir DIR (or set CMSIS_NN_DIR)")
        from .cmsis import generate_cmsis

        return generate_cmsis(im, out_dir, cmsis_dir, overwrite=overwrite).layers
    from .codegen import generate

    return generate(im, out_dir, kernels=kernels, loop_order=loop_order, overwrite=overwrite,
                    pack_weights=pack_weights).layers


def default_inputs(im, n_random: int = 2, seed: int = 0) -> np.ndarray:
    """The quantized all-zero feature input and `n_random` uniformly random int8 inputs."""
    shape = tuple(im.tensors[im.input].shape[1:])
    zero = im.quantize_input(np.zeros((1, *shape), np.float32))
    rnd = np.random.default_rng(seed).integers(-128, 128, size=(n_random, *shape)).astype(np.int8)
    return np.concatenate([zero, rnd])


def clip_inputs(im, data_dir: str | Path, n: int = 3, split: str = "testing", seed: int = 0) -> np.ndarray:
    """int8 inputs from `n` clips of a data set split, with the model's front end (MLPerf's if unknown)."""
    from ..audio import FrontendConfig, get_preset
    from ..data.speech_commands import KEYWORDS_10, SILENCE, UNKNOWN
    from ..train.evaluate import split_features

    fe = im.meta.get("frontend")
    fe = get_preset(fe) if isinstance(fe, str) else FrontendConfig.from_dict(fe) if fe else get_preset("mlperf")
    labels = im.meta.get("labels") or [SILENCE, UNKNOWN, *KEYWORDS_10]
    feats, _ = split_features(data_dir, split, list(labels), fe, limit=n, seed=seed)
    return im.quantize_input(np.asarray(feats))


def bench_m7(im, kernels: str = "fast", loop_order: str = "input", opt: str = "O2", dsp: bool = True,
             inputs: np.ndarray | None = None, cmsis_dir: str | Path | None = None, clock_mhz: float = 216.0,
             work_dir: str | Path | None = None, model: str = "", pack_weights: str = "auto") -> dict:
    """Generate, build for the Cortex-M7, run on the emulator, compare with IntModel.run: one dict
    with the bench-mcu JSON keys (instructions, per layer, flash, RAM, stack, bit_exact, est_ms)."""
    import tempfile

    x = default_inputs(im) if inputs is None else np.asarray(inputs, np.int8)
    with tempfile.TemporaryDirectory(prefix="tkws_m7_") as tmp:
        proj = Path(work_dir) if work_dir else Path(tmp) / "project"
        layers = generate_project(im, proj, kernels, loop_order, cmsis_dir, overwrite=True, pack_weights=pack_weights)
        elf = build_m7(proj, opt=opt, dsp=dsp)
        r = run_m7(elf, x)
    ref = im.run(x).reshape(len(x), -1)
    bit_exact = bool(r.outputs.shape == ref.shape and (r.outputs == ref).all() and not any(r.status))
    macs = int(sum(l.get("macs", 0) for l in layers))
    per_layer = r.layer_instructions if len(r.layer_instructions) == len(layers) else [None] * len(layers)
    out_layers = [{"name": l.get("name"), "op": l.get("op"), "kernel": l.get("kernel"), "macs": int(l.get("macs", 0)),
                   "instructions": n, "instructions_per_mac": round(n / l["macs"], 3) if n and l.get("macs") else None}
                  for l, n in zip(layers, per_layer)]
    return {"model": model, "kernels": kernels, "loop_order": None if kernels == "cmsis-nn" else loop_order,
            "opt": opt.lstrip("-"), "dsp": dsp, "inputs": len(x), "bit_exact": bit_exact,
            "instructions": r.instructions, "instructions_each": r.instructions_each, "macs": macs,
            "instructions_per_mac": round(r.instructions / macs, 3) if macs else None,
            "flash_bytes": r.flash_bytes, "flash": r.flash, "ram_bytes": r.ram_bytes, "ram": r.ram,
            "arena_bytes": r.ram["arena"], "stack_bytes": r.stack_bytes,
            "est_ms": round(r.instructions / (clock_mhz * 1e3), 2), "clock_mhz": clock_mhz, "est_note": EST_NOTE,
            "counting": r.counting, "layers": out_layers}


def flash_ram(project_dir: str | Path, gen, im=None, opt: str = "O2") -> dict:
    """Flash and RAM of a generated project. Measured where the Cortex-M7 toolchain and the emulator
    are there (`tinykws.deploy.mcu`: an -O2 firmware linked with --gc-sections, flash = model +
    kernels, RAM = arena + stack high-water mark + static data, one input run on the emulated M7);
    else estimated: flash = the emitted constant arrays (kernel code not counted), RAM = the arena."""
    try:
        elf = build_m7(project_dir, opt=opt, profile=False)
        x = np.zeros((1, *im.tensors[im.input].shape[1:]), np.int8) if im is not None else None
        r = run_m7(elf, x) if x is not None else None
    except McuError as exc:
        const = getattr(gen, "const_bytes", 0)
        return {"flash_bytes": const, "flash_model_bytes": const, "flash_kernel_bytes": None,
                "ram_bytes": gen.plan.arena_bytes,
                "flash_source": f"estimate: the emitted constant arrays only, kernel code not counted ({exc})",
                "ram_source": "estimate: the activation arena only"}
    if r is None:
        sz = sizes(elf)
        flash, ram, stack = sz["flash"], gen.plan.arena_bytes, None
    else:
        flash, ram, stack = r.flash, r.ram_bytes, r.stack_bytes
    model, kern = int(flash["model"]), int(flash["kernels"])
    return {"flash_bytes": model + kern, "flash_model_bytes": model, "flash_kernel_bytes": kern,
            "flash_other_bytes": int(flash.get("other", 0)), "ram_bytes": int(ram), "stack_bytes": stack,
            "flash_source": f"measured: Cortex-M7 -{opt} build (arm-none-eabi-gcc), model {model:,} + kernels "
                            f"{kern:,} bytes; start-up and libc of the test firmware ({int(flash.get('other', 0)):,}) "
                            f"not counted",
            "ram_source": "measured on the emulated Cortex-M7: arena + stack high-water mark + static data"
                          if r is not None else "the activation arena (stack not measured)"}
