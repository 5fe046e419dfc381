"""Where model annotators run: cuda when there is one, half precision there, fp32 on CPU.

torch is imported by the pickers, not by this module: annotators keep `device` and `dtype` as
option strings until `load()` (checking a dtype name needs no torch), so the driver, which builds
every annotator only to ask for its models and resources, never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPES = ("float32", "float16", "bfloat16")


def check_dtype(option: str) -> str:
    """`option` if it is `auto` or one of DTYPES, else a ValueError."""
    if option != "auto" and option not in DTYPES:
        raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}, got {option!r}")
    return option


def pick_device(option: str = "auto") -> torch.device:
    """`auto` = cuda when available, else cpu; anything else is passed to torch as is."""
    import torch

    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(option)


def pick_dtype(option: str, device: torch.device) -> torch.dtype:
    """`auto` = bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU (where half is slow)."""
    import torch

    if check_dtype(option) == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return getattr(torch, option)
