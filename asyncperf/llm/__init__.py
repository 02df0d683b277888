"""LLM response caching: exact keys, in-flight joins, a guarded similarity layer, costs.

``from asyncperf.llm import LLMCache`` needs nothing beyond the core; the OpenAI wrapper
lives in :mod:`asyncperf.llm.openai` and needs ``pip install 'asyncperf[llm]'``.
"""

from ._cache import Layer, LLMCache
from ._calibrate import CalibrationReport, CalibrationRow, required_traps, wilson_upper_bound
from ._canonical import OPENAI_CHAT_DEFAULTS, CanonicalRequest, canonical_request
from ._embed import Embedder, HashedNgramEmbedder, SentenceTransformerEmbedder, cosine
from ._guards import DEICTIC_WORDS, FILLER_WORDS, Guards, PromptFeatures, prompt_features
from ._pricing import DEFAULT_PRICES, ModelPrice, PriceTable, Usage
from ._request import Prepared, ResponseCodec
from ._stats import LLMStatistics, SimilarityStatistics, UsageStatistics

__all__ = [
    "DEFAULT_PRICES",
    "DEICTIC_WORDS",
    "FILLER_WORDS",
    "OPENAI_CHAT_DEFAULTS",
    "CalibrationReport",
    "CalibrationRow",
    "CanonicalRequest",
    "Embedder",
    "Guards",
    "HashedNgramEmbedder",
    "LLMCache",
    "LLMStatistics",
    "Layer",
    "ModelPrice",
    "Prepared",
    "PriceTable",
    "PromptFeatures",
    "ResponseCodec",
    "SentenceTransformerEmbedder",
    "SimilarityStatistics",
    "Usage",
    "UsageStatistics",
    "canonical_request",
    "cosine",
    "prompt_features",
    "required_traps",
    "wilson_upper_bound",
]
