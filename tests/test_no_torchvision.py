"""torchvision cannot be installed next to the CPU torch here: expunge must never import it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_importing_everything_never_imports_torchvision():
    code = ("import sys, pkgutil, importlib, expunge\n"
            "for m in pkgutil.walk_packages(expunge.__path__, 'expunge.'):\n"
            "    importlib.import_module(m.name)\n"
            "expunge.methods()\n"
            "assert 'torchvision' not in sys.modules, 'torchvision was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_no_source_file_mentions_a_torchvision_import():
    root = Path(__file__).resolve().parents[1]
    for path in list((root / "src").rglob("*.py")) + list((root / "benchmarks").rglob("*.py")):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not (stripped.startswith(("import torchvision", "from torchvision"))), f"{path}: {line}"


def test_the_base_install_needs_no_language_model_or_diffusion_library():
    """``import expunge`` and the registry load neither transformers, tokenizers, peft (the ``lm`` extra) nor
    diffusers (the ``gen`` extra): they are imported only when a language or diffusion model is used."""
    code = ("import sys, expunge\n"
            "expunge.methods()\n"
            "loaded = [m for m in ('transformers', 'tokenizers', 'peft', 'diffusers') if m in sys.modules]\n"
            "assert not loaded, f'imported at start-up: {loaded}'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
