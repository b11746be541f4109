"""PEFT's own test suite, from the sdist of the installed peft version on PyPI (`pip download`), unpacked once into a
cache folder. Nothing of PEFT's test code is kept in this project: it is read from the unpacked sdist."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import peft

PACKAGE = "peft_tests"  # PEFT's `tests/` folder, renamed so that it cannot clash with this project's `tests`
SDIST_ENV = "PEFT_SDIST"  # a local peft-<version>.tar.gz to use instead of downloading it


class SdistUnavailable(RuntimeError):
    """The sdist of the installed peft could not be downloaded or read."""


def peft_version() -> str:
    return peft.__version__


def unpacked_tests(cache_dir: Path, version: str | None = None) -> Path:
    """The folder that holds PEFT's test package `peft_tests/` for `version` (default: the installed one), unpacked
    from the sdist into `cache_dir/<version>/` on first use. Raises SdistUnavailable when it cannot be obtained."""
    version = version or peft_version()
    root = cache_dir / version
    if (root / PACKAGE / "testing_common.py").is_file():
        return root
    archive = Path(os.environ[SDIST_ENV]) if os.environ.get(SDIST_ENV) else download_sdist(version, cache_dir)
    unpack_tests(archive, version, root)
    return root


def download_sdist(version: str, cache_dir: Path) -> Path:
    """`pip download peft==<version> --no-deps --no-binary :all:` into `cache_dir` (kept: reruns need no network)."""
    archive = cache_dir / f"peft-{version}.tar.gz"
    if archive.is_file():
        return archive
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", f"peft=={version}", "--no-deps", "--no-binary", ":all:"]
        command += ["--disable-pip-version-check", "-q", "-d", folder]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SdistUnavailable(f"`{' '.join(command)}` did not finish: {error}") from None
        found = sorted(Path(folder).glob("peft-*.tar.gz"))
        if result.returncode or not found:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise SdistUnavailable(f"`{' '.join(command)}` failed: {' / '.join(tail) or 'no sdist was saved'}")
        shutil.move(found[0], archive)
    return archive


def unpack_tests(archive: Path, version: str, root: Path) -> None:
    """Extract `peft-<version>/tests/*` of the sdist into `root/peft_tests/` (plus an `__init__.py`, for PEFT's
    relative imports), atomically: a half-unpacked folder is never left behind."""
    prefix = f"peft-{version}/tests/"
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=root.parent))
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            if not any(m.name == prefix + "testing_common.py" for m in members):
                raise SdistUnavailable(f"{archive} holds no {prefix}testing_common.py: not the sdist of peft {version}")
            for member in members:
                target = staging / PACKAGE / member.name[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
        (staging / PACKAGE / "__init__.py").touch()
        (staging / "pytest.ini").write_text("[pytest]\n")  # keeps pytest from reading a project's configuration
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    except (tarfile.TarError, OSError) as error:
        raise SdistUnavailable(f"could not unpack {archive}: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
