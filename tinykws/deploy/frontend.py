"""The fixed-point MFCC of the device (C on CMSIS-DSP) and its bit-exact host mirror.

`write_mfcc_sources(cfg, DIR)` writes the C front end of one FrontendConfig (the generic
`frontend_c/tkws_mfcc.c`/`.h` plus the generated `tkws_mfcc_config.h` and `tkws_mfcc_tables.c`:
window, mel filters, DCT and log floor as q31 constants). `DeviceMFCC(cfg)` builds the same C with
gcc into a shared library (cached under `$TINYKWS_CACHE/mfcc`) and runs it through ctypes, so the
host sees exactly the numbers the device computes:

    dev = DeviceMFCC(get_preset("device"))
    q16 = dev.clip_q16(audio_int16)          # (B, 49, 10) int32, MFCC * 65536, framed as training
    frames = dev.stream_q16(audio_int16)     # the incremental path: one frame per hop pushed
    x8 = dev.to_int8(q16, scale, zero_point) # the model's int8 input, as the device converts it

CMSIS-DSP is not copied into tinykws: its C sources come from the `cmsisdsp` source distribution
(scripts/install.sh unpacks it into `.cache/cmsisdsp`); pass `cmsis_dsp=DIR` (CLI `--cmsis-dsp`) or
set `TINYKWS_CMSIS_DSP` to use another copy. It is compiled with `__GNUC_PYTHON__` on the host and
on the Cortex-M7 alike (the source distribution has no CMSIS Core headers; the q31 functions used
here have no DSP-extension paths, so the M7 build loses nothing by it).
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..audio import FrontendConfig, get_preset
from ..audio.frontend import _dct, _mel_htk, _mel_slaney, _window
from . import DeployError

C_DIR = Path(__file__).parent / "frontend_c"
C_FILES = ("tkws_mfcc.c", "tkws_mfcc.h")
REPO_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "cmsisdsp"
CMSIS_DSP_VERSION = "1.10.3"
Q16 = 65536.0
# the CMSIS-DSP sources the front end needs (the linker drops what is not called)
CMSIS_DSP_SOURCES = (
    "Source/TransformFunctions/arm_rfft_q31.c",
    "Source/TransformFunctions/arm_rfft_init_q31.c",
    "Source/TransformFunctions/arm_cfft_q31.c",
    "Source/TransformFunctions/arm_cfft_init_q31.c",
    "Source/TransformFunctions/arm_cfft_radix4_q31.c",
    "Source/TransformFunctions/arm_cfft_radix2_q31.c",
    "Source/TransformFunctions/arm_bitreversal.c",
    "Source/TransformFunctions/arm_bitreversal2.c",
    "Source/CommonTables/arm_common_tables.c",
    "Source/CommonTables/arm_const_structs.c",
    "Source/BasicMathFunctions/arm_shift_q31.c",
    "Source/BasicMathFunctions/arm_mult_q31.c",
    "Source/BasicMathFunctions/arm_dot_prod_q31.c",
    "Source/FastMathFunctions/arm_sqrt_q31.c",
    "Source/FastMathFunctions/arm_vlog_q31.c",
    "Source/MatrixFunctions/arm_mat_vec_mult_q31.c",
)
CMSIS_DSP_DEFINES = ("-D__GNUC_PYTHON__",)
# the stages of one frame, as tkws_mfcc.c marks them (TKWS_MFCC_PROFILE)
STAGES = ("ring_copy", "scale_window", "rfft", "magnitude", "mel_log", "dct", "int8")
FFT_SIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


# ---------------------------------------------------------------------------- CMSIS-DSP location

def find_cmsis_dsp(path: str | Path | None = None) -> Path:
    """The CMSIS-DSP source folder (with Include/arm_math.h): `path`, else $TINYKWS_CMSIS_DSP, else the
    checkout's .cache/cmsisdsp (where scripts/install.sh unpacks the `cmsisdsp` source distribution)."""
    given = path or os.environ.get("TINYKWS_CMSIS_DSP")
    root = Path(given) if given else REPO_CACHE
    cands = [root] + (sorted(root.glob("cmsisdsp-*"), reverse=True) if root.is_dir() else [])
    for c in cands:
        if (c / "Include" / "arm_math.h").is_file() and (c / "Source" / "TransformFunctions").is_dir():
            return c.resolve()
    how = ("pass --cmsis-dsp DIR / set TINYKWS_CMSIS_DSP, or run scripts/install.sh, which unpacks it into "
           f"{REPO_CACHE}")
    if given:
        raise DeployError(f"{given}: not a CMSIS-DSP source folder (no Include/arm_math.h); {how}")
    raise DeployError(f"CMSIS-DSP sources not found in {REPO_CACHE}; {how} (`pip download cmsisdsp=="
                      f"{CMSIS_DSP_VERSION} --no-binary cmsisdsp --no-deps` gives the .tar.gz)")


def cmsis_dsp_sources(root: Path) -> list[Path]:
    missing = [s for s in CMSIS_DSP_SOURCES if not (root / s).is_file()]
    if missing:
        raise DeployError(f"{root}: CMSIS-DSP folder lacks {missing[0]} (expected version {CMSIS_DSP_VERSION})")
    return [root / s for s in CMSIS_DSP_SOURCES]


def cmsis_dsp_includes(root: Path) -> list[Path]:
    return [root / "Include", root / "PrivateInclude"]


# ---------------------------------------------------------------------------- what the device computes

def check_device_frontend(cfg: FrontendConfig) -> None:
    """Raise DeployError naming the setting when the fixed-point front end cannot compute `cfg`."""
    problems = []
    if cfg.kind != "mfcc":
        problems.append(f"kind={cfg.kind!r} (the device computes MFCCs)")
    else:
        if cfg.n_fft not in FFT_SIZES:
            problems.append(f"n_fft={cfg.n_fft} (CMSIS-DSP's q31 real FFT takes a power of two, 32-4096)")
        if cfg.input_norm != "none":
            problems.append(f"input_norm={cfg.input_norm!r} (a stream has no clip to normalize by its peak)")
        if cfg.center:
            problems.append("center=True (a stream cannot look ahead)")
        if cfg.spectrum != "magnitude":
            problems.append(f"spectrum={cfg.spectrum!r} (the device computes the magnitude spectrum)")
        if cfg.hop_length > cfg.win_length:
            problems.append(f"hop_length={cfg.hop_length} > win_length={cfg.win_length}")
        if cfg.log_offset < 1e-7:
            problems.append(f"log_offset={cfg.log_offset:g} (below 1e-7 the floor is lost in the fixed-point noise)")
    if problems:
        raise DeployError("front end not computable on the device: " + "; ".join(problems)
                          + " (train with --frontend device)")


def _q31(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(a, np.float64) * 2.0**31), -2.0**31, 2.0**31 - 1).astype(np.int64)


def mfcc_tables(cfg: FrontendConfig) -> dict:
    """The constants of the C front end (q31 integers), from the same float matrices as the torch MFCC."""
    check_device_frontend(cfg)
    fft_bits = int(math.log2(cfg.n_fft))
    mel = _mel_htk(cfg) if cfg.mel_scale == "htk" else _mel_slaney(cfg)  # (bins, mels)
    if mel.max() > 1.0:
        raise DeployError(f"mel weights up to {mel.max():.3f} do not fit q31 (use mel_scale='htk')")
    mq = _q31(mel)
    pos, length, coefs = [], [], []
    for j in range(cfg.n_mels):
        nz = np.nonzero(mq[:, j])[0]
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 1)
        pos.append(lo)
        length.append(hi - lo)
        coefs.extend(mq[lo:hi, j].tolist())
    return {
        "fft": cfg.n_fft, "fft_bits": fft_bits, "win": cfg.win_length, "hop": cfg.hop_length,
        "bins": cfg.n_fft // 2 + 1, "mels": cfg.n_mels, "coefs": cfg.n_mfcc,
        "floor_acc": int(round(cfg.log_offset * 2.0 ** (48 - fft_bits))),
        "window": _q31(_window(cfg.window, cfg.win_length)), "mel_pos": pos, "mel_len": length,
        "mel_coefs": np.asarray(coefs, np.int64), "dct": _q31(_dct(cfg).T).reshape(-1),  # (coefs, mels) row-major
    }


def _c_ints(vals, per_line: int = 8) -> str:
    vals = [int(v) for v in vals]
    rows = [", ".join(str(v) for v in vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    return "    " + ",\n    ".join(rows)


def write_mfcc_sources(cfg: FrontendConfig, out_dir: str | Path, profile: bool = False) -> list[Path]:
    """Write the C front end of `cfg` into out_dir: tkws_mfcc.c/.h, tkws_mfcc_config.h, tkws_mfcc_tables.c
    (profile: tkws_mfcc.c calls tkws_layer_mark between its stages)."""
    t = mfcc_tables(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name in C_FILES:
        shutil.copyfile(C_DIR / name, out / name)
        files.append(out / name)
    header = f"""/* Generated by tinykws from the front end {cfg.key()} ({cfg.feature_shape[0]} x {cfg.n_mfcc}). */
#ifndef TKWS_MFCC_CONFIG_H
#define TKWS_MFCC_CONFIG_H
#include <stdint.h>

#define TKWS_MFCC_SAMPLE_RATE {cfg.sample_rate}
#define TKWS_MFCC_FFT {t['fft']}
#define TKWS_MFCC_FFT_BITS {t['fft_bits']}
#define TKWS_MFCC_WIN {t['win']}
#define TKWS_MFCC_HOP {t['hop']}
#define TKWS_MFCC_BINS {t['bins']}
#define TKWS_MFCC_MELS {t['mels']}
#define TKWS_MFCC_COEFS {t['coefs']}
#define TKWS_MFCC_CLIP_FRAMES {cfg.n_frames}
/* log floor {cfg.log_offset:g} in the mel accumulator's units (q16.48 of mel / 2^FFT_BITS) */
#define TKWS_MFCC_FLOOR_ACC {t['floor_acc']}LL
#define TKWS_MFCC_RFFT_INIT arm_rfft_init_{t['fft']}_q31
{"#define TKWS_MFCC_PROFILE 1" if profile else ""}

extern const int32_t tkws_mfcc_window[TKWS_MFCC_WIN];
extern const uint16_t tkws_mfcc_mel_pos[TKWS_MFCC_MELS];
extern const uint16_t tkws_mfcc_mel_len[TKWS_MFCC_MELS];
extern const int32_t tkws_mfcc_mel_coefs[{len(t['mel_coefs'])}];
extern const int32_t tkws_mfcc_dct[TKWS_MFCC_COEFS * TKWS_MFCC_MELS];
#endif
"""
    tables = f"""/* Generated by tinykws from the front end {cfg.key()}: q31 constants. */
#include "tkws_mfcc_config.h"

/* periodic {cfg.window} window of {cfg.win_length} samples (zero-padded to the FFT size) */
const int32_t tkws_mfcc_window[TKWS_MFCC_WIN] = {{
{_c_ints(t['window'])}
}};
/* {cfg.mel_scale} mel filters {cfg.fmin:g}-{cfg.fmax:g} Hz: first bin, number of bins, weights */
const uint16_t tkws_mfcc_mel_pos[TKWS_MFCC_MELS] = {{
{_c_ints(t['mel_pos'], 16)}
}};
const uint16_t tkws_mfcc_mel_len[TKWS_MFCC_MELS] = {{
{_c_ints(t['mel_len'], 16)}
}};
const int32_t tkws_mfcc_mel_coefs[{len(t['mel_coefs'])}] = {{
{_c_ints(t['mel_coefs'])}
}};
/* DCT-II ({cfg.dct}), {cfg.n_mfcc} rows of {cfg.n_mels} */
const int32_t tkws_mfcc_dct[TKWS_MFCC_COEFS * TKWS_MFCC_MELS] = {{
{_c_ints(t['dct'])}
}};
"""
    for name, text in (("tkws_mfcc_config.h", header), ("tkws_mfcc_tables.c", tables)):
        (out / name).write_text(text)
        files.append(out / name)
    return files


def quant_multiplier(scale: float) -> tuple[int, int]:
    """(mult, shift) with v * mult / 2^(31 + shift) ~= (v / 65536) / scale, mult in [2^30, 2^31)."""
    m = 1.0 / (float(scale) * Q16)
    if not 0 < m < 1:
        raise DeployError(f"input scale {scale:g} out of range for the int8 conversion of the MFCC")
    shift = 0
    while m * 2.0 ** (31 + shift) < 2.0**30:
        shift += 1
    mult = int(round(m * 2.0 ** (31 + shift)))
    if mult == 2**31:
        mult, shift = 2**30, shift - 1
    if not 0 <= shift <= 31:
        raise DeployError(f"input scale {scale:g} out of range for the int8 conversion of the MFCC")
    return mult, shift


# ---------------------------------------------------------------------------- host mirror

def _source_hash(cfg: FrontendConfig, cmsis: Path) -> str:
    h = hashlib.sha1(cfg.key().encode())
    for name in C_FILES:
        h.update((C_DIR / name).read_bytes())
    h.update(str(cmsis).encode())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()[:12]


def build_host_library(cfg: FrontendConfig, cmsis_dsp: str | Path | None = None, cc: str = "gcc") -> Path:
    """gcc -O2 -shared of the C front end of `cfg` with CMSIS-DSP; cached by the sources' hash."""
    from ..data.clips import cache_root

    root = find_cmsis_dsp(cmsis_dsp)
    check_device_frontend(cfg)
    if shutil.which(cc) is None:
        raise DeployError(f"the host mirror of the device MFCC needs {cc} on PATH")
    out = cache_root() / "mfcc" / _source_hash(cfg, root)
    lib = out / "libtkws_mfcc.so"
    if lib.is_file():
        return lib
    src = out / "src"
    write_mfcc_sources(cfg, src)
    tmp = out / f".libtkws_mfcc.so.tmp{os.getpid()}"
    cmd = [cc, "-O2", "-shared", "-fPIC", "-std=c99", *CMSIS_DSP_DEFINES, f"-I{src}",
           *[f"-I{d}" for d in cmsis_dsp_includes(root)], str(src / "tkws_mfcc.c"), str(src / "tkws_mfcc_tables.c"),
           *map(str, cmsis_dsp_sources(root)), "-lm", "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        first = next((l for l in r.stderr.splitlines() if "error" in l), r.stderr.strip()[:300])
        raise DeployError(f"building the device MFCC for the host failed: {first}")
    os.replace(tmp, lib)
    return lib


_I16P = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")
_I32P = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_I8P = np.ctypeslib.ndpointer(np.int8, flags="C_CONTIGUOUS")


class DeviceMFCC:
    """The device's fixed-point MFCC on the host (the same C, through ctypes): bit-exact with the device."""

    def __init__(self, cfg: FrontendConfig | str = "device", cmsis_dsp: str | Path | None = None):
        self.cfg = get_preset(cfg) if isinstance(cfg, str) else cfg
        self.lib_path = build_host_library(self.cfg, cmsis_dsp)
        lib = ctypes.CDLL(str(self.lib_path))
        lib.tkws_mfcc_state_size.restype = ctypes.c_uint32
        lib.tkws_mfcc_init.argtypes = [ctypes.c_void_p]
        lib.tkws_mfcc_push.argtypes = [ctypes.c_void_p, _I16P, _I32P]
        lib.tkws_mfcc_clip.argtypes = [ctypes.c_void_p, _I16P, ctypes.c_int32, _I32P]
        lib.tkws_mfcc_clip.restype = ctypes.c_int32
        lib.tkws_mfcc_to_s8.argtypes = [_I32P, _I8P, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32]
        self.lib = lib
        self._state = ctypes.create_string_buffer(lib.tkws_mfcc_state_size())
        self.state_bytes = lib.tkws_mfcc_state_size()

    def _init(self):
        if self.lib.tkws_mfcc_init(self._state) != 0:
            raise DeployError(f"CMSIS-DSP has no q31 real FFT of size {self.cfg.n_fft}")

    @staticmethod
    def _int16(audio) -> np.ndarray:
        a = np.asarray(audio)
        if a.dtype != np.int16:
            if np.issubdtype(a.dtype, np.floating):  # float audio in [-1, 1], as the training front end takes it
                a = np.clip(np.round(a.astype(np.float64) * 32768.0), -32768, 32767)
            a = a.astype(np.int16)
        return np.ascontiguousarray(a)

    def clip_q16(self, audio) -> np.ndarray:
        """(B, T) or (T,) int16 (or float in [-1, 1]) audio -> (B, n_frames, n_mfcc) int32 (MFCC * 65536)."""
        a = self._int16(audio)
        single = a.ndim == 1
        a = a[None] if single else a
        cfg = self.cfg
        n_frames = 1 + (a.shape[1] - cfg.win_length) // cfg.hop_length if a.shape[1] >= cfg.win_length else 0
        out = np.zeros((len(a), n_frames, cfg.n_mfcc), np.int32)
        self._init()
        for i, row in enumerate(a):
            buf = np.zeros((max(n_frames, 1), cfg.n_mfcc), np.int32)
            self.lib.tkws_mfcc_clip(self._state, np.ascontiguousarray(row), len(row), buf)
            out[i] = buf[:n_frames]
        return out[0] if single else out

    def clip(self, audio) -> np.ndarray:
        """As clip_q16, as float32 MFCCs (the same numbers / 65536)."""
        return self.clip_q16(audio).astype(np.float32) / np.float32(Q16)

    def __call__(self, wave):
        """Float audio (B, T) -> float MFCCs as a torch tensor: a drop-in for the torch front end."""
        import torch

        return torch.from_numpy(self.clip(np.asarray(wave, np.float32)))

    def stream_q16(self, audio) -> np.ndarray:
        """Push 1-D int16 audio hop by hop through the ring buffer; (frames, n_mfcc) int32 (a trailing
        partial hop is left out). Frame k ends at the last sample of the hop that produced it."""
        a = self._int16(audio).reshape(-1)
        hop, c = self.cfg.hop_length, self.cfg.n_mfcc
        self._init()
        frames, buf = [], np.zeros(c, np.int32)
        for k in range(len(a) // hop):
            if self.lib.tkws_mfcc_push(self._state, np.ascontiguousarray(a[k * hop : (k + 1) * hop]), buf):
                frames.append(buf.copy())
        return np.stack(frames) if frames else np.zeros((0, c), np.int32)

    def stream(self) -> "MFCCStream":
        """A fresh incremental front end (its own ring buffer): .push(hop) -> one frame or None."""
        return MFCCStream(self)

    def to_int8(self, q16, scale: float, zero_point: int) -> np.ndarray:
        """The device's conversion of MFCC (int32, * 65536) to the model's int8 input."""
        mult, shift = quant_multiplier(scale)
        v = np.ascontiguousarray(q16, dtype=np.int32)
        out = np.zeros(v.shape, np.int8)
        self.lib.tkws_mfcc_to_s8(v.reshape(-1), out.reshape(-1), v.size, mult, shift, int(zero_point))
        return out


class MFCCStream:
    """One stream through the device's ring buffer: push TKWS_MFCC_HOP int16 samples at a time."""

    def __init__(self, dev: DeviceMFCC):
        self.dev = dev
        self.hop = dev.cfg.hop_length
        self._state = ctypes.create_string_buffer(dev.state_bytes)
        if dev.lib.tkws_mfcc_init(self._state) != 0:
            raise DeployError(f"CMSIS-DSP has no q31 real FFT of size {dev.cfg.n_fft}")
        self._buf = np.zeros(dev.cfg.n_mfcc, np.int32)

    def push(self, hop) -> np.ndarray | None:
        """`hop` new samples (int16, or float in [-1, 1]) -> the new frame (n_mfcc,) int32 (MFCC * 65536),
        or None while the ring holds less than one frame."""
        h = DeviceMFCC._int16(hop).reshape(-1)
        if len(h) != self.hop:
            raise DeployError(f"push takes exactly {self.hop} samples (one hop), got {len(h)}")
        if self.dev.lib.tkws_mfcc_push(self._state, np.ascontiguousarray(h), self._buf):
            return self._buf.copy()
        return None


# ---------------------------------------------------------------------------- Cortex-M7 cost

def _m7_project(cfg: FrontendConfig, out: Path, n_samples: int, mult: int, shift: int, zp: int,
                cmsis: Path, stages: bool = False) -> None:
    """A bench project in the layout mcu.build_m7 takes: model.h/model.c push the audio hop by hop
    (tkws_layer_mark around each hop) and write the int8 features of every frame."""
    import json

    write_mfcc_sources(cfg, out, profile=stages)
    n_frames = max(0, (n_samples - cfg.win_length) // cfg.hop_length + 1)
    hops = n_samples // cfg.hop_length
    (out / "model.h").write_text(f"""#ifndef TKWS_MODEL_H
#define TKWS_MODEL_H
#include <stdint.h>
#define TKWS_INPUT_SIZE {2 * n_samples}
#define TKWS_OUTPUT_SIZE {max(1, n_frames * cfg.n_mfcc)}
int tkws_invoke(const int8_t *in, int8_t *out);
void tkws_layer_mark(int i);
#endif
""")
    (out / "model.c").write_text(f"""/* Bench of the device MFCC: {hops} hops of int16 audio in, int8 features of each frame out. */
#include <string.h>
#include "model.h"
#include "tkws_mfcc.h"

static tkws_mfcc_state st;
__attribute__((noinline, weak)) void tkws_layer_mark(int i) {{ (void)i; }}

int tkws_invoke(const int8_t *in, int8_t *out)
{{
    static int16_t hop[TKWS_MFCC_HOP];
    int32_t mfcc[TKWS_MFCC_COEFS];
    int k, f = 0;
    if (tkws_mfcc_init(&st) != 0) {{
        return -1;
    }}
    for (k = 0; k < {hops}; k++) {{
        memcpy(hop, in + 2 * k * TKWS_MFCC_HOP, sizeof(hop));
        tkws_layer_mark(k);
        if (tkws_mfcc_push(&st, hop, mfcc)) {{
            tkws_mfcc_to_s8(mfcc, out + f * TKWS_MFCC_COEFS, TKWS_MFCC_COEFS, {mult}, {shift}, {zp});
            f++;
        }}
    }}
    tkws_layer_mark({hops});
    return f;
}}
""")
    wrappers = []
    for src in cmsis_dsp_sources(cmsis):  # build_m7 takes no extra flags: the define goes in a one-line wrapper
        w = out / f"cmsis_{src.stem}.c"
        w.write_text(f'#define __GNUC_PYTHON__ 1\n#include "{src}"\n')
        wrappers.append(w.name)
    (out / "build.json").write_text(json.dumps({
        "sources": ["model.c", "tkws_mfcc.c", "tkws_mfcc_tables.c", *wrappers],
        "include_dirs": [".", *map(str, cmsis_dsp_includes(cmsis))]}, indent=1))


def bench_m7(cfg: FrontendConfig | str = "device", audio=None, scale: float = 0.5, zero_point: int = 0,
             opt: str = "O2", cmsis_dsp: str | Path | None = None, clock_mhz: float = 216.0,
             work_dir: str | Path | None = None, stages: bool = False) -> dict:
    """Build the device MFCC for the Cortex-M7 (arm-none-eabi-gcc, `mcu.build_m7`), push `audio`
    (int16, default 0.5 s of a seeded noisy tone) hop by hop on the emulated M7 and count
    instructions per hop; the int8 features are compared with the host mirror. stages=True also
    measures one frame stage by stage (the marks inside tkws_mfcc.c; a separate build)."""
    import tempfile

    from .mcu import build_m7, run_m7

    cfg = get_preset(cfg) if isinstance(cfg, str) else cfg
    cmsis = find_cmsis_dsp(cmsis_dsp)
    if audio is None:
        rng = np.random.default_rng(0)
        t = np.arange(cfg.sample_rate // 2) / cfg.sample_rate
        audio = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * rng.standard_normal(len(t))
    a = DeviceMFCC._int16(audio).reshape(-1)
    a = a[: len(a) // cfg.hop_length * cfg.hop_length]
    mult, shift = quant_multiplier(scale)
    with tempfile.TemporaryDirectory(prefix="tkws_mfcc_m7_") as tmp:
        proj = Path(work_dir) if work_dir else Path(tmp) / "project"
        _m7_project(cfg, proj, len(a), mult, shift, int(zero_point), cmsis)
        elf = build_m7(proj, opt=opt)
        r = run_m7(elf, a.view(np.int8)[None])
        if stages:
            n = (-(-cfg.win_length // cfg.hop_length) + 1) * cfg.hop_length
            sp = Path(tmp) / "stages"
            _m7_project(cfg, sp, n, mult, shift, int(zero_point), cmsis, stages=True)
            marks = run_m7(build_m7(sp, opt=opt), a[:n].view(np.int8)[None]).layer_instructions
    host = DeviceMFCC(cfg, cmsis)
    ref = host.to_int8(host.stream_q16(a), scale, zero_point).reshape(-1)
    got = r.outputs[0][: len(ref)]
    per_hop = r.layer_instructions
    n_win = -(-cfg.win_length // cfg.hop_length)  # hops before the ring holds a frame
    framed = per_hop[n_win - 1 :]
    per_frame = int(np.median(framed)) if framed else 0
    hop_ms = 1000.0 * cfg.hop_length / cfg.sample_rate
    return {"frontend": cfg.key(), "opt": opt.lstrip("-"), "hops": len(per_hop), "frames": int(r.status[0]),
            "bit_exact": bool(np.array_equal(got, ref) and r.status[0] == len(ref) // cfg.n_mfcc),
            "instructions_per_hop": per_frame, "instructions_per_hop_min": int(min(framed)) if framed else 0,
            "instructions_per_hop_max": int(max(framed)) if framed else 0,
            "instructions_hop_without_frame": int(per_hop[0]) if per_hop else 0,
            "est_ms_per_hop": round(per_frame / (clock_mhz * 1e3), 3), "hop_ms": hop_ms,
            "duty_cycle": round(per_frame / (clock_mhz * 1e3) / hop_ms, 4), "clock_mhz": clock_mhz,
            "flash_bytes": int(r.flash["model"] + r.flash["kernels"]), "flash": r.flash,
            "state_bytes": host.state_bytes, "stack_bytes": r.stack_bytes, "ram_bytes": r.ram_bytes,
            "stages": dict(zip(STAGES, map(int, marks[-len(STAGES):]))) if stages else {},
            "counting": r.counting,
            "est_note": "instructions / clock at one instruction per cycle (unicorn has no cycle model)"}


# ---------------------------------------------------------------------------- float vs fixed point

def split_audio(data_dir: str | Path, split: str, labels: list[str], seed: int = 0):
    """(int16 audio (N, 16000), labels (N,)) of a split, chosen as tinykws.train.evaluate chooses them."""
    from ..data.clips import load_clips
    from ..data.speech_commands import SpeechCommands
    from ..train.evaluate import task_of

    ds = SpeechCommands.open(data_dir)
    clips = load_clips(ds, ds.entries(split, task_of(labels), 0.1, 0.1, seed), labels, seed)
    if len(clips) == 0:
        raise DeployError(f"{data_dir}: no readable clips in the {split} split")
    return clips.audio, np.asarray(clips.labels)


def agreement(im, audio, y=None, cmsis_dsp: str | Path | None = None, batch: int = 256) -> dict:
    """The int8 model `im` (an IntModel) fed the float training features against the device's
    fixed-point features of the same int16 clips: top-1 changes, accuracies, the feature gap."""
    import torch

    from ..audio import build_frontend

    cfg = FrontendConfig.from_dict(im.meta["frontend"]) if isinstance(im.meta.get("frontend"), dict) \
        else get_preset(im.meta.get("frontend") or "device")
    dev = DeviceMFCC(cfg, cmsis_dsp)
    t = im.tensors[im.input]
    scale, zp = float(t.scale[0]), int(t.zp)
    a = DeviceMFCC._int16(audio)
    fe = build_frontend(cfg)
    p_f, p_d, gap_max, gap_sum, q_diff, q_max, n_vals = [], [], 0.0, 0.0, 0, 0, 0
    for i in range(0, len(a), batch):
        chunk = a[i : i + batch]
        with torch.no_grad():
            ff = fe(torch.from_numpy(chunk.astype(np.float32) / 32768.0)).numpy()
        q16 = dev.clip_q16(chunk)
        fd = q16.astype(np.float64) / Q16
        gap = np.abs(fd - ff)
        gap_max, gap_sum, n_vals = max(gap_max, float(gap.max())), gap_sum + float(gap.sum()), n_vals + gap.size
        xf, xd = im.quantize_input(ff), dev.to_int8(q16, scale, zp).reshape(len(chunk), *t.shape[1:])
        dq = np.abs(xf.astype(np.int32) - xd.astype(np.int32))
        q_diff, q_max = q_diff + int((dq > 0).sum()), max(q_max, int(dq.max()))
        p_f.append(im.run(xf).reshape(len(chunk), -1).argmax(1))
        p_d.append(im.run(xd).reshape(len(chunk), -1).argmax(1))
    p_f, p_d = np.concatenate(p_f), np.concatenate(p_d)
    changed = int((p_f != p_d).sum())
    out = {"n": int(len(a)), "top1_changed": changed, "top1_changed_frac": changed / len(a),
           "feature_gap_max": gap_max, "feature_gap_mean": gap_sum / n_vals,
           "int8_inputs_differing_frac": q_diff / n_vals, "int8_inputs_max_diff": q_max,
           "input_scale": scale, "input_zero_point": zp}
    if y is not None:
        y = np.asarray(y)
        out["int8_acc_float_features"] = float((p_f == y).mean())
        out["int8_acc_device_features"] = float((p_d == y).mean())
    return out
