"""The CPU a benchmark runs on, and the CPU it may emulate.

``describe()`` reads /proc/cpuinfo. ``emulate(name)`` makes this process
behave, for the float baselines, like a CPU with less SIMD: an AVX-512 host
can then measure the ratios that issue 13 states "on an AVX2-only CPU"
(binary_dense vs tf.matmul, packed model vs larq), which forcing our own kernel
alone cannot, since TensorFlow's float kernels would still use AVX-512 (and
AMX where present).

What the emulation caps (before any float kernel has run in the process):

* oneDNN, which runs TensorFlow's MatMul and Conv2D on x86:
  ``ONEDNN_MAX_CPU_ISA`` (read when the first primitive is created);
* ruy, inside larq-compute-engine's interpreter: ``RUY_PATHS`` (hex bit field of
  ruy's ``Path``: standard C++ 0x1, AVX 0x10, AVX2+FMA 0x20, AVX-512 0x40);
  "sse41" (a CPU without AVX: only the portable kernel) caps both lower;
* tfdisc's own kernels: only the emulated CPU's kernels are timed.

What it cannot change: clock, caches and memory of this host, TensorFlow's
Eigen kernels (compiled for a fixed ISA, without AVX2 in the pip wheel) and
LCE's statically compiled kernels. ``onednn_isa()`` asks oneDNN, in a child
process with the same environment, which ISA it actually uses, so the report
states it rather than assuming it.
"""

import collections
import os
import platform
import re
import subprocess
import sys

# Flags of /proc/cpuinfo that decide which kernel can run.
FLAGS = ("popcnt", "sse4_1", "avx2", "avx512f", "avx512bw", "avx512_vpopcntdq", "asimd")

# kernels: the tfdisc kernels that CPU has, best first; env: what caps the float libraries;
# needs: the /proc/cpuinfo flag this host needs to stand in for that CPU.
Emulation = collections.namedtuple("Emulation", "kernels env needs")
EMULATIONS = {
    "avx2": Emulation(("avx2", "portable"), {"ONEDNN_MAX_CPU_ISA": "AVX2", "RUY_PATHS": "31"},
                      "avx2"),
    # An x86-64 CPU without AVX (SSE4.1 is oneDNN's lowest x86 level): only the portable kernel.
    "sse41": Emulation(("portable",), {"ONEDNN_MAX_CPU_ISA": "SSE41", "RUY_PATHS": "1"},
                       "sse4_1"),
}


def describe():
    """(model name, 'vendor V, family F, model M', relevant flags) from /proc/cpuinfo."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    key, value = (part.strip() for part in line.split(":", 1))
                    info.setdefault(key, value)
    except OSError:
        pass
    model = info.get("model name") or info.get("CPU part") or platform.processor() or "unknown"
    ident = (f"vendor {info.get('vendor_id', info.get('CPU implementer', '?'))}, "
             f"family {info.get('cpu family', info.get('CPU architecture', '?'))}, "
             f"model {info.get('model', info.get('CPU part', '?'))}")
    present = set((info.get("flags") or info.get("Features") or "").split())
    return model, ident, [flag for flag in FLAGS if flag in present]


def summary():
    """One line naming this machine's CPU for a results file: model, identity, CPU count."""
    model, ident, _ = describe()
    return f"{model} ({ident}), {os.cpu_count()} CPUs"


def emulate(name):
    """Caps the float libraries to CPU `name` (a key of EMULATIONS) in this
    process; returns the tfdisc kernels that CPU would have.

    Call it before any TensorFlow MatMul/Conv2D or LCE interpreter has run.
    Raises ValueError for an unknown name, and when this machine is not x86-64
    or lacks the emulated CPU's own instructions."""
    if name not in EMULATIONS:
        raise ValueError(f"Unknown CPU to emulate {name!r}; choose from {sorted(EMULATIONS)}")
    if platform.machine() not in ("x86_64", "AMD64"):
        raise ValueError(f"Emulating an {name} CPU needs an x86-64 host, not {platform.machine()}")
    emulation = EMULATIONS[name]
    _, _, present = describe()
    if emulation.needs not in present:
        raise ValueError(f"This CPU lacks {emulation.needs}, so it cannot emulate an "
                         f"{name}-only CPU")
    os.environ.update(emulation.env)
    return list(emulation.kernels)


_ISA_PROBE = ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'; import tensorflow as tf; "
              "tf.nn.conv2d(tf.ones([1, 8, 8, 8]), tf.ones([3, 3, 8, 8]), 1, 'SAME')")


def onednn_isa(timeout=120):
    """The ISA oneDNN reports it uses, in a child process with this process's
    environment (so a cap set by emulate() applies), or a sentence saying why
    it could not be read."""
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    try:
        result = subprocess.run([sys.executable, "-c", _ISA_PROBE], env=env, timeout=timeout,
                                capture_output=True, text=True, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({type(e).__name__})"
    match = re.search(r"onednn_verbose,[^\n]*,cpu,isa:([^\n]*)", result.stdout + result.stderr)
    if match:
        return match.group(1).strip()
    return "unknown (oneDNN printed no ISA: TF_ENABLE_ONEDNN_OPTS=0, or no oneDNN build)"
