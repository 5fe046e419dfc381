"""Where model annotators run: cuda when there is one, half precision there, fp32 on CPU."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def pick_device(option: str = "auto") -> torch.device:
    """`auto` = cuda when available, else cpu; anything else is passed to torch as is."""
    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(option)


def pick_dtype(option: str, device: torch.device) -> torch.dtype:
    """`auto` = bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU (where half is slow)."""
    if option == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if option not in DTYPES:
        raise ValueError(f"dtype must be auto or one of {', '.join(DTYPES)}, got {option!r}")
    return DTYPES[option]
