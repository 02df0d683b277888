"""asyncperf.llm's public surface: curated, sorted, and light to import."""

from __future__ import annotations

import subprocess
import sys

import asyncperf.llm


def test_all_is_sorted_and_complete() -> None:
    names = list(asyncperf.llm.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert hasattr(asyncperf.llm, name), name


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_importing_llm_loads_neither_openai_nor_numpy() -> None:
    out = run(
        "import sys, asyncperf, asyncperf.llm; "
        "print(','.join(m for m in ('openai', 'numpy', 'torch') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_openai_wrapper_names_the_extra_when_openai_is_missing() -> None:
    out = run("import sys; sys.modules['openai'] = None; import asyncperf.llm.openai")
    assert out.returncode != 0
    assert "pip install 'asyncperf[llm]'" in out.stderr


def test_the_model_embedder_names_what_to_install() -> None:
    out = run(
        "import sys; sys.modules['sentence_transformers'] = None\n"
        "from asyncperf.llm import SentenceTransformerEmbedder\n"
        "try:\n    SentenceTransformerEmbedder()\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    assert "pip install sentence-transformers" in out.stdout
