"""The weights file of a saved SHINE adapter, checked before PEFT reads it: present, safetensors (never a pickle)
and complete."""

from __future__ import annotations

import os
from typing import Any

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from peft.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME
from safetensors import SafetensorError, safe_open


def check_adapter_weights(source: str, subfolder: str | None = None, **hub_kwargs: Any) -> None:
    """Check that a SHINE adapter folder or Hub repo holds a complete `adapter_model.safetensors` (a Hub file is
    downloaded into the cache, where PEFT then finds it).

    Raises FileNotFoundError when the file is missing (also when only a pickled `adapter_model.bin` exists: SHINE
    never unpickles weights) and ValueError when its header is unreadable or does not match the file size (a
    truncated or corrupted file). `hub_kwargs` go to `hf_hub_download` (revision, cache_dir, token, ...)."""
    folder = os.path.join(source, subfolder) if subfolder else source
    fix = "Save the adapter again with `model.save_pretrained(path)` or copy/upload the complete file"
    if os.path.isdir(folder):
        path = os.path.join(folder, SAFETENSORS_WEIGHTS_NAME)
        if not os.path.isfile(path):
            pickled = os.path.isfile(os.path.join(folder, WEIGHTS_NAME))
            raise FileNotFoundError(_missing_weights_message(path, pickled, fix))
    else:
        try:
            path = hf_hub_download(source, SAFETENSORS_WEIGHTS_NAME, subfolder=subfolder, **hub_kwargs)
        except EntryNotFoundError as error:
            where = f"{source}/{subfolder}" if subfolder else source
            raise FileNotFoundError(
                _missing_weights_message(f"{where}/{SAFETENSORS_WEIGHTS_NAME}", False, fix)
                + f" ({type(error).__name__}: not in the repo, or not in the local cache when offline)"
            ) from None
    try:
        with safe_open(path, framework="pt"):
            pass
    except (SafetensorError, OSError) as error:
        raise ValueError(
            f"{path} is not a readable safetensors file ({error}): it is truncated or corrupted, e.g. by an "
            f"interrupted save, copy or download. {fix}; for a Hub repo, download it again with "
            f"`huggingface_hub.hf_hub_download(repo_id, {SAFETENSORS_WEIGHTS_NAME!r}, force_download=True)`."
        ) from None


def _missing_weights_message(path: str, pickled: bool, fix: str) -> str:
    """The error text for a SHINE adapter without `adapter_model.safetensors`."""
    message = f"{path} not found: a SHINE adapter needs its hypernetwork weights next to adapter_config.json."
    if pickled:
        message += (
            f" The folder holds {WEIGHTS_NAME}, a pickle, which SHINE never loads (unpickling can run code). "
            "If you trust it, convert it: `safetensors.torch.save_file(torch.load(bin_path, weights_only=True), "
            "safetensors_path)`."
        )
    return f"{message} {fix}."
