"""What this CPU can run natively, and the choices that follow from it (bf16, memory layout).

PyTorch can be held to narrower kernels than the hardware has: ``ATEN_CPU_CAPABILITY`` (ATen's
vectorised kernels: ``default``, ``avx2``, ``avx512``) and ``ONEDNN_MAX_CPU_ISA`` (oneDNN's
convolutions and matmuls: ``AVX2``, ``AVX512_CORE``, ``AVX512_CORE_BF16``, ``AVX512_CORE_AMX``,
...). Under ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` an AMX or AVX512-BF16 machine
behaves like a plain AVX2 CPU: bf16 is then emulated (slower than fp32), so it counts as absent.
On x86 builds fp32 ``torch.mm``/``Linear`` go to MKL's BLAS and ``torch.log``/``exp``/``tanh``/
``sqrt``/``erf`` to MKL's vector math, which ignore both and read ``MKL_ENABLE_INSTRUCTIONS``
(``AVX2``): without it a 2048^2 fp32 matmul still ran at 448 GFLOP/s on an AMX Xeon "held to
AVX2" (235 with it), and those functions' results kept their AVX-512 bits. The full emulation
(``make test``'s second pass) sets all three; only the first two decide bf16 here (bf16
matmuls and convolutions are oneDNN's).
``SSDLIB_NO_BF16=1`` says "no bf16" without restricting anything else.
"""

from __future__ import annotations

import os
import sys

import torch

__all__ = ["bf16_support", "channels_last_for_training", "cpu_kind", "describe_amp_choice",
           "describe_bf16_inference", "isa_limits"]  # fmt: skip

# oneDNN's ISA names, in increasing order (aliases of the AVX10 names included); bf16 is native
# from AVX512_CORE_BF16 on (AVX2_VNNI_2 only converts bf16, it has no bf16 dot product).
_ONEDNN_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
                 "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512",
                 "AVX512_CORE_AMX", "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16",
                 "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")  # fmt: skip
_ONEDNN_BF16 = _ONEDNN_ORDER.index("AVX512_CORE_BF16")
_ATEN_BELOW_AVX512 = ("default", "avx2")
# Models whose training step is faster in NCHW on AVX2 kernels (measured: README, Performance).
_AVX2_NCHW_MODELS = ("ssd300_vgg16", "ssd512_vgg16")


def _hardware_bf16() -> bool:
    """AMX tiles or AVX512-BF16 in the silicon (as cpuinfo reports it, whatever the env)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def isa_limits() -> list[str]:
    """The environment settings that hold PyTorch below bf16-capable kernels, as ``NAME=value``.

    Read at every call (tests and notebooks set them per process); an unknown oneDNN name is
    ignored, as oneDNN itself does.
    """
    limits = []
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten in _ATEN_BELOW_AVX512:
        limits.append(f"ATEN_CPU_CAPABILITY={aten}")
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", ""))
    name = onednn.strip().upper()
    if name in _ONEDNN_ORDER and _ONEDNN_ORDER.index(name) < _ONEDNN_BF16:
        limits.append(f"ONEDNN_MAX_CPU_ISA={onednn.strip()}")
    if os.environ.get("SSDLIB_NO_BF16", "").strip() not in ("", "0"):
        limits.append("SSDLIB_NO_BF16=" + os.environ["SSDLIB_NO_BF16"].strip())
    return limits


def bf16_support() -> tuple[bool, str]:
    """(native, why): whether bf16 matrix work runs in hardware here, and the reason in words."""
    if not _hardware_bf16():
        return False, "this CPU has no bf16 matrix instructions (AMX or AVX512-BF16)"
    limits = isa_limits()
    if any(limit.startswith("SSDLIB_NO_BF16=") for limit in limits):
        return False, "bf16 units present but SSDLIB_NO_BF16 turns them off"
    if limits:
        return False, f"bf16 units present but {' '.join(limits)} holds PyTorch below them"
    if not torch.backends.mkldnn.is_available():
        return False, "this PyTorch build has no oneDNN (bf16 convolutions would be emulated)"
    if not bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()):  # oneDNN's own view of its ISA
        return False, "oneDNN reports no bf16 support for its ISA on this CPU"
    kind = "AMX" if bool(torch.cpu._is_amx_tile_supported()) else "AVX512-BF16"
    return True, f"this CPU has {kind} and nothing holds PyTorch below it"


def cpu_kind() -> str:
    """A short name of the kernels PyTorch uses here: ``amx``, ``avx512_bf16``, ``avx512``,
    ``avx2`` or ``default`` (ATen's scalar/NEON path), after any environment limits."""
    native, _ = bf16_support()
    if native:
        return "amx" if bool(torch.cpu._is_amx_tile_supported()) else "avx512_bf16"
    capability = torch.backends.cpu.get_cpu_capability().lower()
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten in _ATEN_BELOW_AVX512:  # read once by ATen at start-up; the variable may be newer
        capability = aten if capability != "default" else capability
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if capability.startswith("avx512") and not (
        onednn in _ONEDNN_ORDER and _ONEDNN_ORDER.index(onednn) < _ONEDNN_ORDER.index("AVX512_CORE")
    ):
        return "avx512"
    return "avx2" if capability in ("avx2", "avx512") else "default"


def channels_last_for_training(setting: str | bool, model_name: str, device: torch.device) -> bool:
    """``train.channels_last``: ``on``/``off`` (``true``/``false``) as given; ``auto``: on a GPU
    always (tensor cores want NHWC), on a CPU by the rule below, from :func:`cpu_kind`.

    Measured (2-core shared cloud VMs, torch 2.14; step time channels_last / contiguous, light
    model = ``shapes`` config batch 32 at 160 px; under heavy load, so +-10 %):

    - Intel Xeon with AMX, bf16: 0.80-0.91 (configs/shapes.yaml's earlier note) -> NHWC;
    - AMD EPYC AVX512-BF16 without AMX: bf16 1.08 (load 10), fp32 1.10 (load 18) -> NCHW;
    - AVX2 (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` on that AMD), fp32: light
      model 0.88 (load 13; issue 19 on a native AVX2 EPYC: 2.37 vs 2.0 it/s) -> NHWC; SSD300
      (VGG16) see README, Performance.
    - SSD300 (VGG16) fp32 SGD step at batch 8, quiet 2-core Intel Xeon with AMX, alternated,
      median of 3: native 4.72 s NHWC vs 5.87 s NCHW (0.80) -> NHWC with AMX; held to AVX2
      kernels 9.67 s NHWC vs 8.62 s NCHW (1.12) -> NCHW for VGG16 with AVX2, as on the AMD.
    """
    if isinstance(setting, bool):
        return setting
    if setting in ("on", "true", "off", "false"):
        return setting in ("on", "true")
    if setting != "auto":
        raise ValueError(f"train.channels_last is {setting!r}; expected auto, on or off")
    if device.type == "cuda":
        return True
    kind = cpu_kind()
    if kind == "amx":
        return True
    if kind == "avx2":
        return model_name not in _AVX2_NCHW_MODELS
    return False


def describe_amp_choice(setting: str, dtype: torch.dtype | None, device: torch.device) -> str:
    """One line saying what ``train.amp`` resolved to and why (printed once by the CLIs)."""
    chosen = "fp32 (no autocast)" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast"
    if setting != "auto":
        return f"train.amp={setting}: {chosen}, as set"
    if device.type == "cuda":
        why = "the GPU supports bf16" if dtype == torch.bfloat16 else "the GPU has no bf16"
    else:
        native, why = bf16_support()
        if not native:
            why += "; emulated bf16 is slower than fp32"
    return f"train.amp=auto: {chosen} ({why})"


def describe_bf16_inference(device: torch.device) -> str:
    """One line for ``--dtype bf16``: bf16 weights, and whether this CPU runs them natively."""
    if device.type != "cpu":
        return "--dtype bf16: bf16 weights on the GPU"
    native, why = bf16_support()
    if native:
        return f"--dtype bf16: bf16 weights ({why})"
    return f"--dtype bf16: bf16 weights as asked, emulated: {why}; expect it slower than fp32"


def announce(line: str, _said: set[str] = set()) -> None:  # noqa: B006 (the once-only memory)
    """Print ``line`` to stderr once per process."""
    if line not in _said:
        _said.add(line)
        print(line, file=sys.stderr, flush=True)


def announce_training_precision(amp_setting: str, device_setting: str) -> None:
    """The CLIs' one line about ``train.amp`` (rank 0 only under torchrun)."""
    from ssdlib.engine.trainer import resolve_amp, resolve_device

    if os.environ.get("RANK", "0") != "0":
        return
    device = resolve_device(device_setting)
    announce(describe_amp_choice(amp_setting, resolve_amp(amp_setting, device), device))
