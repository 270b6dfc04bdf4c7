"""Units from tokenizer offsets: invariants for WordPiece, byte-level BPE and SentencePiece, at
token and word granularity, for single texts and pairs (hypothesis), plus concrete examples."""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import faithscope as fs
from faithscope.units import Unit, build_units, unit_token_matrix

ALPHABET = (string.ascii_letters + string.digits + string.punctuation + "   \t"
            + "éèàüñçÉÖß" + "\U0001F600")
texts = st.text(alphabet=ALPHABET, min_size=1, max_size=40).filter(lambda s: s.strip())
# FAITHSCOPE_HYPOTHESIS_EXAMPLES=2000 for a longer hunt
SETTINGS = settings(deadline=None,
                    max_examples=int(os.environ.get("FAITHSCOPE_HYPOTHESIS_EXAMPLES", 60)))
TOKENIZERS = ["bert_tokenizer", "bpe_tokenizer", "sp_tokenizer"]


@pytest.fixture(scope="module", params=TOKENIZERS)
def adapter(request, linear_adapter):
    """Any model will do: units only depend on the tokenizer."""
    tok = request.getfixturevalue(request.param)
    return fs.ModelAdapter(linear_adapter.model, tok, model_id=request.param)


def check_invariants(enc, units, granularity):
    segments = [enc.text] if enc.pair is None else [enc.text, enc.pair]
    assert not enc.truncated
    # text[u.start:u.end] == u.text, sorted, non-overlapping, never empty
    for u in units:
        assert isinstance(u, Unit)
        seg = segments[u.part]
        assert 0 <= u.start < u.end <= len(seg)
        assert seg[u.start:u.end] == u.text
        assert u.text == u.text.strip()
    keys = [(u.part, u.start, u.end) for u in units]
    assert keys == sorted(keys)
    for a, b in zip(units, units[1:]):
        assert a.part < b.part or a.end <= b.start
    # every non-space character is covered
    for part, seg in enumerate(segments):
        covered = set()
        for u in units:
            if u.part == part:
                covered.update(range(u.start, u.end))
        missing = [i for i, ch in enumerate(seg) if not ch.isspace() and i not in covered]
        assert not missing, f"uncovered characters {[seg[i] for i in missing]!r}"
    # special tokens in no unit; every other token in exactly one unit, of its own segment
    owner: dict[int, int] = {}
    for k, u in enumerate(units):
        assert list(u.tokens) == sorted(set(u.tokens))
        for p in u.tokens:
            assert p not in owner, f"token {p} in two units"
            owner[p] = k
            assert enc.sequence_ids[p] == u.part
    for p, s in enumerate(enc.sequence_ids):
        if s is None:
            assert p not in owner
        else:
            assert p in owner, f"token {p} ({enc.ids[p]}) belongs to no unit"
    if granularity == "token":
        # a token unit is the union of its (overlapping) tokens' spans, whitespace trimmed; a
        # unit without such tokens only holds characters no token covers
        for u in units:
            seg = segments[u.part]
            spans = [_stripped(seg, *enc.offsets[p]) for p in u.tokens]
            spans = [(a, b) for a, b in spans if b > a]
            if spans:
                assert (u.start, u.end) == (min(a for a, _ in spans), max(b for _, b in spans))
            else:
                for p, s in enumerate(enc.sequence_ids):
                    if s == u.part:
                        a, b = enc.offsets[p]
                        assert b <= u.start or a >= u.end


def _stripped(seg: str, a: int, b: int) -> tuple[int, int]:
    a, b = max(a, 0), min(b, len(seg))
    while a < b and seg[a].isspace():
        a += 1
    while b > a and seg[b - 1].isspace():
        b -= 1
    return a, b


@pytest.mark.parametrize("granularity", ["token", "word"])
@SETTINGS
@given(text=texts)
def test_unit_invariants_single(adapter, granularity, text):
    enc = adapter.encode(text)
    units = build_units(text, None, enc.offsets, enc.sequence_ids, granularity)
    assert all(u.part == 0 for u in units)
    check_invariants(enc, units, granularity)


@pytest.mark.parametrize("granularity", ["token", "word"])
@SETTINGS
@given(text=texts, pair=texts)
def test_unit_invariants_pair(adapter, granularity, text, pair):
    enc = adapter.encode(text, pair)
    units = build_units(text, pair, enc.offsets, enc.sequence_ids, granularity)
    assert {u.part for u in units} == {0, 1}
    check_invariants(enc, units, granularity)


@SETTINGS
@given(text=texts)
@example(text=" 00:")  # SentencePiece: two lone "▁" tokens before "00" (a regression)
def test_word_units_are_unions_of_token_units(adapter, text):
    """Each token unit lies inside exactly one word unit (word units only merge)."""
    enc = adapter.encode(text)
    tok_units = build_units(text, None, enc.offsets, enc.sequence_ids, "token")
    word_units = build_units(text, None, enc.offsets, enc.sequence_ids, "word")
    assert len(word_units) <= len(tok_units)
    for t in tok_units:
        inside = [w for w in word_units if w.start <= t.start and t.end <= w.end]
        assert len(inside) == 1
        assert set(t.tokens) <= set(inside[0].tokens)


# ------------------------------------------------------------------ concrete examples
def units_of(adapter, text, granularity="word", pair=None):
    enc = adapter.encode(text, pair)
    return enc, build_units(text, pair, enc.offsets, enc.sequence_ids, granularity)


def test_wordpiece_word_units(bert_adapter):
    enc, units = units_of(bert_adapter, "Unboxing, it's well-conceived!")
    assert [u.text for u in units] == ["Unboxing", ",", "it's", "well-conceived", "!"]
    unbox = units[0]
    assert (unbox.start, unbox.end, unbox.part) == (0, 8, 0)
    assert unbox.tokens == (1, 2, 3)  # [CLS] un ##box ##ing
    pieces = bert_adapter.tokenizer.convert_ids_to_tokens(enc.ids[list(unbox.tokens)].tolist())
    assert pieces == ["un", "##box", "##ing"]
    _, tok_units = units_of(bert_adapter, "Unboxing, it's well-conceived!", "token")
    assert [u.text for u in tok_units][:4] == ["Un", "box", "ing", ","]
    assert all(len(u.tokens) == 1 for u in tok_units)


def test_accents_and_emoji_wordpiece(bert_adapter):
    # the BERT normaliser strips accents and maps the emoji to [UNK]; offsets still point into
    # the original text
    enc, units = units_of(bert_adapter, "Café 😀 naïve")
    assert [u.text for u in units] == ["Café", "😀", "naïve"]
    unk = bert_adapter.tokenizer.unk_token_id
    assert enc.ids[list(units[1].tokens)].tolist() == [unk]


def test_bpe_word_units(roberta_adapter):
    text = "a gorgeous, witty film"
    enc, units = units_of(roberta_adapter, text)
    assert [u.text for u in units] == ["a", "gorgeous", ",", "witty", "film"]
    assert enc.sequence_ids[0] is None and enc.sequence_ids[-1] is None  # <s> ... </s>
    assert sum(len(u.tokens) for u in units) == len(enc) - 2


def test_sentencepiece_word_units_and_double_space(llama_adapter):
    text = "Once upon a time,  there was"
    enc, units = units_of(llama_adapter, text)
    assert [u.text for u in units] == ["Once", "upon", "a", "time", ",", "there", "was"]
    # every token but <s> is in a unit, including a whitespace-only piece if there is one
    assert sorted(p for u in units for p in u.tokens) == list(range(1, len(enc)))


def test_pair_units(bert_adapter):
    enc, units = units_of(bert_adapter, "the plot is thin.", pair="yet oddly moving")
    assert [(u.part, u.text) for u in units] == [
        (0, "the"), (0, "plot"), (0, "is"), (0, "thin"), (0, "."),
        (1, "yet"), (1, "oddly"), (1, "moving")]
    assert [enc.type_ids[list(u.tokens)].tolist()[0] for u in units] == [0] * 5 + [1] * 3


def test_word_regex_keeps_contractions_and_hyphens():
    offsets = [(0, 0), (0, 3), (3, 4), (4, 5), (6, 10), (10, 11), (11, 15), (0, 0)]
    text = "don't well-made"
    units = build_units(text, None, offsets, [None, 0, 0, 0, 0, 0, 0, None], "word")
    assert [(u.text, u.tokens) for u in units] == [("don't", (1, 2, 3)),
                                                   ("well-made", (4, 5, 6))]


def test_token_bridging_two_words_merges_them():
    # one token covering "a b" merges the two words into one unit
    units = build_units("a b c", None, [(0, 3), (4, 5)], [0, 0], "word")
    assert [(u.text, u.tokens) for u in units] == [("a b", (0,)), ("c", (1,))]


def test_overlapping_tokens_merge():
    # byte-level pieces of one character share its offsets
    units = build_units("x\U0001F600y", None, [(0, 1), (1, 2), (1, 2), (2, 3)], [0] * 4,
                        "token")
    assert [(u.text, u.tokens) for u in units] == [("x", (0,)), ("\U0001F600", (1, 2)),
                                                   ("y", (3,))]


def test_characters_dropped_by_the_normaliser_become_units():
    # "é" got no token: in token mode it is still covered, by a unit without tokens
    units = build_units("caé", None, [(0, 2)], [0], "token")
    assert [(u.text, u.tokens) for u in units] == [("ca", (0,)), ("é", ())]
    units = build_units("caé", None, [(0, 2)], [0], "word")
    assert [(u.text, u.tokens) for u in units] == [("caé", (0,))]


def test_whitespace_tokens_attach_to_next_unit():
    # SentencePiece-style lone "▁" token (offsets cover only a space)
    units = build_units("a  b", None, [(0, 1), (1, 2), (2, 4)], [0, 0, 0], "token")
    assert [(u.text, u.tokens) for u in units] == [("a", (0,)), ("b", (1, 2))]
    # several whitespace tokens in a row all go to the unit after them (a regression: the
    # second one used to skip to the unit after that)
    units = build_units("  ab:", None, [(0, 1), (1, 2), (2, 4), (4, 5)], [0] * 4, "word")
    assert [(u.text, u.tokens) for u in units] == [("ab", (0, 1, 2)), (":", (3,))]
    # at the end there is no next unit: the previous one takes it
    units = build_units("a ", None, [(0, 1), (1, 2)], [0, 0], "word")
    assert [(u.text, u.tokens) for u in units] == [("a", (0, 1))]


def test_truncated_text_drops_unseen_units():
    units = build_units("one two three", None, [(0, 0), (0, 3), (4, 7), (0, 0)],
                        [None, 0, 0, None], "word", truncated=True)
    assert [u.text for u in units] == ["one", "two"]
    full = build_units("one two three", None, [(0, 0), (0, 3), (4, 7), (0, 0)],
                       [None, 0, 0, None], "word")
    assert [u.text for u in full] == ["one", "two", "three"] and full[-1].tokens == ()


def test_build_units_rejects_bad_granularity():
    with pytest.raises(ValueError, match="granularity"):
        build_units("a", None, [(0, 1)], [0], "sentence")


def test_unit_token_matrix():
    units = (Unit("a", 0, 1, 0, (1,)), Unit("b", 2, 3, 0, (2, 3)))
    assert unit_token_matrix(units, 3) == [[1], [2]]
