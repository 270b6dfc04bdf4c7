"""The architecture matrix (tests/architectures.py): tiny random models of 23 architecture x head
pairs (encoder classifiers, decoder classifiers, causal and seq2seq LMs), each built offline
in a fraction of a second, x every registered explainer and removal operator.

Every cell either passes its checks (the conformance contract: shapes, finite scores, the same
scores under the same seed; IG completeness; rollout rows summing to 1; LRP's rules leaving the
forward unchanged; an operator's output equal to a hand-built input's) or is refused with a
one-line InputError, and the refused cells are exactly the expected ones
(:func:`architectures.expected_refusal`). Causal and seq2seq LMs also score their own
generations by teacher forcing exactly as the model does. The README's support table is this
matrix's rendering (``scripts/support_table.py``) and must match it.

The whole module runs in about a minute on one core (see scripts/support_table.py --times)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import architectures as A

README = Path(__file__).resolve().parents[1] / "README.md"


def _id(arch: A.Arch) -> str:
    return f"{arch.name}-{arch.kind}"


def _skip_missing(arch: A.Arch) -> None:
    why = A.missing_class(arch)
    if why:
        pytest.skip(why)


archs = pytest.mark.parametrize("arch", A.ARCHS, ids=_id)
lms = pytest.mark.parametrize("arch", [a for a in A.ARCHS if a.kind != "classifier"], ids=_id)
CELLS = [(a, c) for a in A.ARCHS for c in A.COLUMNS]


def test_the_matrix_covers_the_architectures_and_columns():
    names = {(a.name, a.kind) for a in A.ARCHS}
    for n in ("BERT", "RoBERTa", "XLM-RoBERTa", "DeBERTa-v2", "ELECTRA", "DistilBERT",
              "ALBERT", "MPNet", "ModernBERT"):
        assert (n, "classifier") in names
    for n in ("GPT-2", "Llama", "Mistral", "Qwen2", "Gemma", "Phi"):
        assert {(n, "classifier"), (n, "causal")} <= names
    assert {("T5", "seq2seq"), ("BART", "seq2seq")} <= names
    assert set(A.COLUMNS) >= {"op:delete", "op:mask", "op:pad", "op:unk", "lrp",
                              "integrated_gradients", "attention_rollout"}


@archs
def test_special_token_ids_match_the_tokenizer(arch):
    _skip_missing(arch)
    adapter = A.adapter_of(arch)
    A.check_special_ids(arch, adapter)
    assert adapter.tokenizer.is_fast  # faithscope needs character offsets


@pytest.mark.parametrize("arch,column", CELLS, ids=[f"{_id(a)}-{c}" for a, c in CELLS])
def test_cell(arch, column):
    _skip_missing(arch)
    cell = A.run_cell(arch, column)
    if cell.status == "failed":
        pytest.fail(f"{arch.label} x {column}: {cell.reason}")
    expected = A.expected_refusal(arch, column)
    if expected is None:
        assert cell.status == A.OK, f"{arch.label} x {column} refused: {cell.reason}"
    else:
        assert cell.status == "refused", f"{arch.label} x {column} ran; expected a refusal"
        assert re.search(expected, cell.reason), cell.reason


@lms
def test_teacher_forcing_matches_the_model(arch):
    _skip_missing(arch)
    A.check_teacher_forcing(A.adapter_of(arch))


def test_readme_support_table_is_the_matrix():
    missing = [a.label for a in A.ARCHS if A.missing_class(a)]
    if missing:
        pytest.skip(f"the README table covers every architecture; this transformers lacks "
                    f"{missing}")
    results = A.all_results()
    failed = [k for k, c in results.items() if c.status == "failed"]
    assert not failed, f"failed cells: {failed}"
    want = A.table(results)
    got = A.readme_block(README.read_text(encoding="utf-8"))
    assert got == want, ("README support table is stale: run "
                         "`python scripts/support_table.py --write`")
