"""Dataset loaders on the vendored fixtures (tests/assets/data, see its README)."""

from __future__ import annotations

import csv
import inspect
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from faithscope.data import (
    DataError,
    Dataset,
    Example,
    bundled_sst2,
    load_dataset,
    rationale_mask,
    rationale_texts,
    read_table,
)
from faithscope.data.core import ENV_VAR
from faithscope.registry import datasets
from faithscope.units import Unit, build_units
from helpers import ASSETS

DATA = ASSETS / "data"
COMMON = ("path", "split", "n", "seed", "shuffle", "skip_bad")

# every registered loader on its fixture: (name, kwargs, examples, labels)
FIXTURES = [
    ("sst2", {}, 30, ("negative", "positive")),
    ("sst2", {"split": "train"}, 30, ("negative", "positive")),
    ("sst2_planted", {"fraction": 0.5}, 30, ("negative", "positive")),
    ("esnli", {}, 30, ("entailment", "neutral", "contradiction")),
    ("esnli", {"split": "test"}, 10, ("entailment", "neutral", "contradiction")),
    ("esnli", {"split": "test", "source": "highlights"}, 20,
     ("entailment", "neutral", "contradiction")),
    ("esnli", {"source": "plain"}, 30, ("entailment", "neutral", "contradiction")),
    ("cose", {}, 34, ("A", "B", "C")),
    ("cose", {"split": "test"}, 3, ("A", "B", "C")),
    ("eraser", {}, 4, ("NEG", "POS")),
    ("hatexplain", {"split": "test"}, 30, ("hatespeech", "normal", "offensive")),
    ("hatexplain", {}, 10, ("hatespeech", "normal", "offensive")),
    ("hatexplain", {"split": "test", "source": "eraser"}, 30, ("non-toxic", "toxic")),
    ("multinli", {}, 10, ("entailment", "neutral", "contradiction")),
    ("multinli", {"split": "dev_mismatched"}, 12, ("entailment", "neutral", "contradiction")),
    ("hf", {"path": DATA / "multinli" / "validation_matched.jsonl", "text_column": "premise",
            "pair_column": "hypothesis"}, 10, ("0", "1", "2")),
    ("prompts", {}, 30, ()),  # the bundled prompts of generation studies: unlabelled
    ("planted", {"base": "esnli"}, 30, ("entailment", "neutral", "contradiction")),
    ("examples", {"path": DATA / "examples" / "esnli_six.jsonl"}, 6,
     ("entailment", "neutral", "contradiction")),
]


@pytest.fixture
def data_env(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(DATA))


def words(ex: Example) -> list[Unit]:
    """Word units of an example from a regex (no tokenizer)."""
    segs = [ex.text] if ex.pair is None else [ex.text, ex.pair]
    return [Unit(m.group(), m.start(), m.end(), p)
            for p, s in enumerate(segs) for m in re.finditer(r"\w+", s)]


def marked_words(ex: Example) -> list[str]:
    units = words(ex)
    return [u.text for u, m in zip(units, rationale_mask(units, ex.rationale)) if m]


# ------------------------------------------------------------------ registry and common API
def test_every_loader_registered_with_keyword_only_common_arguments():
    assert set(datasets.names()) == {"sst2", "sst2_planted", "esnli", "cose", "eraser",
                                     "hatexplain", "hf", "multinli", "prompts", "planted", "examples"}
    assert {f[0] for f in FIXTURES} == set(datasets.names())
    for name in datasets.names():
        params = inspect.signature(datasets.get(name)).parameters
        assert all(p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
                   for p in params.values()), name
        assert set(COMMON) <= set(params), name
        assert params["split"].default == "dev" and params["skip_bad"].default is False


@pytest.mark.parametrize("name,kwargs,count,labels", FIXTURES,
                         ids=[f"{f[0]}-{'-'.join(map(str, f[1].values()))}" for f in FIXTURES])
def test_fixture_loads(data_env, name, kwargs, count, labels):
    ds = load_dataset(name, **kwargs)
    assert isinstance(ds, Dataset) and ds.name == name
    assert len(ds) == count and ds.labels == labels
    assert ds.info["n_skipped"] == 0 and ds.info["source"]
    assert len({ex.id for ex in ds}) == len(ds)
    for ex in ds:
        assert ex.text.strip() and (ex.pair is None or ex.pair.strip())
        assert ex.label is None or 0 <= ex.label < len(ds.labels)
        for p, a, b in ex.rationale or ():  # spans are validated by Example; and non-blank
            assert ex.segment(p)[a:b].strip() == ex.segment(p)[a:b]
    # n, shuffle, seed
    if count >= 4:
        first = load_dataset(name, **kwargs, n=3)
        assert [e.id for e in first] == [e.id for e in ds[:3]] or name in ("sst2_planted", "planted")
        a = load_dataset(name, **kwargs, shuffle=True, seed=5)
        b = load_dataset(name, **kwargs, shuffle=True, seed=5)
        assert [e.id for e in a] == [e.id for e in b]
        assert sorted(e.id for e in a) == sorted(e.id for e in ds)
        assert [e.id for e in a] != [e.id for e in ds]


def test_default_path_needs_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(DataError, match=ENV_VAR):
        load_dataset("sst2")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cose")
    with pytest.raises(DataError, match="no such file"):
        load_dataset("eraser", path=tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("sst3")


def test_explicit_path_equals_environment(data_env):
    a = load_dataset("eraser", n=2)
    b = load_dataset("eraser", path=DATA / "eraser_movies", n=2)
    assert a.examples == b.examples


# ------------------------------------------------------------------ Example / Dataset types
def test_example_meta_is_read_only_hashable_and_picklable():
    ex = Example("1", "a fine film", label=1, rationale=[(0, 2, 6)], meta={"ground_truth": True})
    assert ex.rationale == ((0, 2, 6),) and rationale_texts(ex) == ["fine"]
    with pytest.raises(TypeError):
        ex.meta["x"] = 1  # type: ignore[index]
    assert hash(ex) == hash(Example("1", "a fine film", label=1, rationale=((0, 2, 6),)))
    assert pickle.loads(pickle.dumps(ex)) == ex
    assert json.loads(json.dumps(ex.meta)) == {"ground_truth": True}
    assert Example("2", "x").meta == {} and Example("2", "x").rationale is None
    with pytest.raises(ValueError, match="outside"):
        Example("3", "short", rationale=((0, 2, 9),))
    with pytest.raises(ValueError, match="no pair"):
        Example("4", "short", rationale=((1, 0, 1),))


def test_read_table_and_bundled_sst2_still_work(tmp_path):
    assert len(bundled_sst2("dev")) == 872
    exs = read_table(DATA / "sst2" / "glue_dev.tsv", limit=5)
    assert [e.label for e in exs] == [1, 0, 1, 1, 0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "ok", "label": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        read_table(bad)


# ------------------------------------------------------------------ sst2 and sst2_planted
def test_sst2_train_concatenates_parts_and_bundled():
    ds = load_dataset("sst2", path=DATA / "sst2", split="train")
    part2 = (DATA / "sst2" / "glue_train_part2.tsv").read_text().splitlines()
    assert ds[20].text == part2[1].split("\t")[0].strip()
    assert [f.rsplit("/", 1)[-1] for f in ds.info["source"]] == ["glue_train_part1.tsv",
                                                                 "glue_train_part2.tsv"]
    dev = load_dataset("sst2", path=DATA / "sst2")
    assert dev[0].text == "it 's a charming and often affecting journey ." and dev[0].label == 1
    assert dev[0].rationale is None
    assert len(load_dataset("sst2", bundled=True, split="train")) == 4000


@pytest.mark.parametrize("fraction", [1.0, 0.3, 0.0])
def test_sst2_planted_invariants(fraction):
    base = load_dataset("sst2", path=DATA / "sst2")
    ds = load_dataset("sst2_planted", path=DATA / "sst2", fraction=fraction, seed=3)
    assert len(ds) == len(base)
    old = [e.label for e in base]
    new = [e.label for e in ds]
    assert sorted(new) == sorted(old)  # a permutation of the label vector
    assert [e.meta["original_label"] for e in ds] == old
    planted = [e for e in ds if e.meta["planted"]]
    assert len(planted) == round(fraction * len(ds)) == ds.info["n_planted"]
    for b, e in zip(base, ds):
        assert e.meta["ground_truth"] is True
        if e.meta["planted"]:
            word = ds.labels[e.label]
            assert e.text == f"{b.text} {word}"
            assert rationale_texts(e) == [word] and e.rationale == (
                (0, len(b.text) + 1, len(e.text)),)
        else:
            assert e.text == b.text and e.rationale == ()
    again = load_dataset("sst2_planted", path=DATA / "sst2", fraction=fraction, seed=3)
    assert again.examples == ds.examples
    if fraction == 1.0:
        other = load_dataset("sst2_planted", path=DATA / "sst2", fraction=fraction, seed=4)
        assert [e.label for e in other] != new


def test_sst2_planted_shuffles_labels_away_from_the_text():
    ds = load_dataset("sst2_planted", bundled=True, seed=0)
    agree = np.mean([e.label == e.meta["original_label"] for e in ds])
    assert 0.4 < agree < 0.6  # chance agreement: the sentence no longer predicts the label


# ------------------------------------------------------------------ e-SNLI
def test_esnli_highlights_hand_checked(data_env):
    ds = load_dataset("esnli", source="highlights")
    ex = ds.by_id()["esnli-dev-1"]  # highlight_idx [6, 7, 8, 13, 14], premise_len 10
    assert ds.label_name(ex) == "entailment"
    assert ex.text == "Two women are embracing while holding to go packages ."
    assert ex.pair == "Two woman are holding packages ."
    assert rationale_texts(ex) == ["to go packages", "holding packages"]
    assert [p for p, _, _ in ex.rationale] == [0, 1]
    ex2 = ds.by_id()["esnli-dev-2"]  # [1, 3, 11, 13]
    assert rationale_texts(ex2) == ["women", "embracing", "men", "fighting"]
    test = load_dataset("esnli", split="test", source="highlights")
    assert test[0].text.endswith("at a church.")  # raw strings, tokens aligned to them
    assert rationale_texts(test[0]) == ["cracks in the ceiling"]


def test_esnli_csv_matches_the_highlights_it_was_converted_from(data_env):
    csv_ds = load_dataset("esnli", split="test", source="csv")
    hl = load_dataset("esnli", split="test", source="highlights", n=10)
    assert csv_ds.info["format"] == "csv"
    for a, b in zip(csv_ds, hl):
        assert (a.text, a.pair, a.label) == (b.text, b.pair, b.label)
        assert marked_words(a) == marked_words(b)
    ex = csv_ds.by_id()["esnli-test-1"]
    assert rationale_texts(ex) == ["choir sings to the masses", "filled with song"]  # "song."
    assert ex.meta["explanations"][0].startswith("`` filled with song ''")


def _esnli_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    cols = ["pairID", "gold_label", "Sentence1", "Sentence2"] + [
        f"{c}_{k}" for k in (1, 2, 3) for c in ("Explanation", "Sentence1_marked",
                                                "Sentence2_marked", "Sentence1_Highlighted",
                                                "Sentence2_Highlighted")]
    path.mkdir(exist_ok=True)
    f = path / "esnli_dev.csv"
    with open(f, "w", newline="") as fh:
        w = csv.DictWriter(fh, cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return f


def test_esnli_csv_annotator_aggregation_and_index_fallback(tmp_path):
    s1, s2 = "A dog runs on grass.", "An animal is outside."
    row = {"pairID": "p1", "gold_label": "entailment", "Sentence1": s1, "Sentence2": s2,
           "Sentence1_marked_1": "A *dog* runs on *grass.*", "Sentence2_marked_1": s2,
           "Sentence1_marked_2": "A *dog* *runs* on grass.", "Sentence2_marked_2": "An *animal* is outside.",
           # annotator 3: the marked text is garbled, so the word indices are used
           "Sentence1_marked_3": "A dog *rns* on grass", "Sentence1_Highlighted_3": "1,2",
           "Sentence2_marked_3": s2, "Sentence2_Highlighted_3": "{}"}
    f = _esnli_csv(tmp_path, [row])
    texts = lambda **kw: rationale_texts(load_dataset("esnli", path=f, **kw)[0])  # noqa: E731
    assert texts() == ["dog runs", "grass", "animal"]
    assert texts(annotators="majority") == ["dog runs"]
    assert texts(annotators=1) == ["dog", "grass"]
    assert texts(annotators="3") == ["dog runs"]
    ds = load_dataset("esnli", path=f)
    assert ds.info["n_marks_from_indices"] == 1 and ds[0].meta["n_annotators"] == 3
    with pytest.raises(DataError, match="annotator 1 only"):
        load_dataset("esnli", path=DATA / "esnli_highlights", annotators="majority")


def test_esnli_plain_files_align_with_highlights(data_env):
    plain = load_dataset("esnli", source="plain")
    hl = load_dataset("esnli", source="highlights")
    assert [(e.text, e.pair, e.label) for e in plain] == [(e.text, e.pair, e.label) for e in hl]
    assert all(e.rationale is None for e in plain)


# ------------------------------------------------------------------ CoS-E
def test_cose_hand_checked(data_env):
    ds = load_dataset("cose")
    ex = ds[0]
    assert ex.text == "Why do people who are dying receive social security payments?"
    assert ex.pair == "born again unable to work no longer exist"
    assert ds.label_name(ex) == "B" and rationale_texts(ex) == ["social security payments"]
    # selections that caught the annotation interface's "Answer Choices:" / cut words
    by_stem = {e.text: e for e in ds}
    e = by_stem["If student got a list of supplies from class like paper and pencils, their "
                "parent would have to go where?"]
    assert e.meta["selected"].startswith("ist of supplies")
    assert rationale_texts(e) == ["list of supplies from class like paper and pencils"]
    assert ds.info["n_rationale_exact"] == 34
    lettered = load_dataset("cose", choices="lettered", n=1)
    assert lettered[0].pair == "A: born again B: unable to work C: no longer exist"
    test = load_dataset("cose", split="test")
    assert all(e.label is None and e.rationale is None for e in test)


def test_cose_word_fallback(tmp_path):
    q = {"answerKey": "A", "id": "q1", "question": {"stem": "Where do you keep milk cold?",
         "choices": [{"label": k, "text": t} for k, t in zip("ABC", ["fridge", "oven", "bag"])]}}
    (tmp_path / "dev_rand_split.jsonl").write_text(json.dumps(q) + "\n")
    e = {"id": "q1", "explanation": {"open-ended": "x", "selected": "milk is kept cold"}}
    (tmp_path / "cose_dev_v1.0.jsonl").write_text(json.dumps(e) + "\n")
    ds = load_dataset("cose", path=tmp_path)
    assert rationale_texts(ds[0]) == ["milk cold"] and ds.info["n_rationale_words_matched"] == 1


# ------------------------------------------------------------------ ERASER
def test_eraser_evidence_text_equals_the_document_substring(data_env):
    ds = load_dataset("eraser")
    text = (DATA / "eraser_movies" / "val.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    for ex, row in zip(ds, rows):
        assert ex.id == f"eraser-{row['annotation_id']}" and ex.pair is None  # trivial query
        assert ds.label_name(ex) == row["classification"]
        marked = " ".join(rationale_texts(ex))
        for group in row["evidences"]:
            for ev in group:
                tokens = ex.text.split(" ")
                assert " ".join(tokens[ev["start_token"]:ev["end_token"]]) == ev["text"]
                assert ev["text"] in marked
    assert rationale_texts(ds[0]) == ["nothing really worth watching",
                                      "definitely the cinematic equivalent of a sleeper car"]
    assert ds.info.get("n_evidence_text_mismatch", 0) == 0


def test_eraser_max_words_and_query(data_env):
    full = load_dataset("eraser", n=1)[0]
    cut = load_dataset("eraser", n=1, max_words=650)[0]
    assert cut.text == " ".join(full.text.split(" ")[:650]) and cut.meta["truncated"]
    assert rationale_texts(cut) == ["nothing really worth watching"]  # the other is past 650
    cut2 = load_dataset("eraser", n=1, max_words=696)[0]
    assert rationale_texts(cut2)[-1] == "definitely the cinematic equivalent"  # clipped
    q = load_dataset("eraser", n=1, use_query=True)[0]
    assert q.pair == "What is the sentiment of this review?"
    assert load_dataset("eraser", labels=("POS", "NEG"), n=1)[0].label == 1


# ------------------------------------------------------------------ HateXplain
def test_hatexplain_majority_labels_and_union_rationales(data_env):
    ds = load_dataset("hatexplain", split="test")
    ex = ds.by_id()["hatexplain-1252707503441313794_twitter"]
    assert ex.meta["annotator_labels"] == ("offensive", "normal", "offensive")
    assert ds.label_name(ex) == "offensive" and rationale_texts(ex) == ["retarded"]
    normal = ds.by_id()["hatexplain-1178610029273976833_twitter"]
    assert ds.label_name(normal) == "normal" and normal.rationale == ()
    # the ERASER file: same rationales, binary labels consistent with the majority label
    er = load_dataset("hatexplain", split="test", source="eraser").by_id()
    assert set(er) == set(ds.by_id())
    for ex in ds:
        other = er[ex.id]
        assert other.text == ex.text and other.rationale == ex.rationale
        assert (other.label == 1) == (ds.label_name(ex) != "normal")


def test_hatexplain_ties(tmp_path):
    src = (DATA / "hatexplain" / "hatexplain_val.csv").read_text(encoding="utf-8").splitlines()
    row = next(csv.reader([src[1]]))
    row[1] = "{'label': [0, 1, 2], 'annotator_id': [1, 2, 3], 'target': [[], [], []]}"
    with open(tmp_path / "hatexplain_val.csv", "w", newline="", encoding="utf-8") as fh:
        fh.write(src[0] + "\r\n")
        csv.writer(fh).writerow(row)
        fh.write("\r\n".join(src[2:4]) + "\r\n")
    ds = load_dataset("hatexplain", path=tmp_path)
    assert len(ds) == 2 and ds.info["n_ties"] == 1 and ds.info["n_skipped"] == 0
    und = load_dataset("hatexplain", path=tmp_path, ties="undecided")
    assert len(und) == 3 and und.labels[-1] == "undecided" and und[0].label == 3


# ------------------------------------------------------------------ hf / multinli
def test_multinli_column_mappings(data_env):
    glue = load_dataset("multinli")
    orig = load_dataset("multinli", split="dev_mismatched")
    assert glue.info["columns"]["text"] == "premise" and orig.info["columns"]["text"] == "sentence1"
    assert [(e.text, e.pair, e.label) for e in glue] == [(e.text, e.pair, e.label)
                                                          for e in orig[:10]]
    assert orig[11].label is None and orig.info["n_unlabelled"] == 1
    assert orig[0].id == "multinli-0e" and glue[0].id == "multinli-0"


def test_hf_local_file_with_string_labels(tmp_path):
    f = tmp_path / "reviews.csv"
    f.write_text("review,sentiment\ngreat film,pos\n\"dull, long\",neg\nfine,pos\n")
    ds = load_dataset("hf", path=f, text_column="review", label_column="sentiment",
                      id_column=None)
    assert ds.labels == ("neg", "pos") and [e.label for e in ds] == [1, 0, 1]
    assert ds[1].text == "dull, long"
    ds2 = load_dataset("hf", path=f, text_column="review", label_column="sentiment",
                       labels=("pos", "neg"))
    assert [e.label for e in ds2] == [0, 1, 0]


def test_hf_without_the_datasets_package_says_how_to_install(monkeypatch):
    try:
        import datasets as _  # noqa: F401
        pytest.skip("the datasets package is installed")
    except ImportError:
        pass
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(DataError, match="pip install datasets"):
        load_dataset("hf", name="glue", config="sst2")
    with pytest.raises(DataError, match="pip install datasets"):
        load_dataset("multinli")


# ------------------------------------------------------------------ rationale_mask
def test_rationale_mask_on_real_tokenizer_units(data_env):
    from faithscope.models.tiny import tiny_classifier

    adapter = tiny_classifier()
    ex = load_dataset("esnli", source="highlights").by_id()["esnli-dev-1"]
    enc = adapter.encode(ex.text, ex.pair)
    for gran in ("word", "token"):
        units = build_units(ex.text, ex.pair, enc.offsets, enc.sequence_ids, gran)
        mask = rationale_mask(units, ex.rationale)
        got = [(u.part, u.text) for u, m in zip(units, mask) if m]
        if gran == "word":
            assert got == [(0, "to"), (0, "go"), (0, "packages"), (1, "holding"),
                           (1, "packages")]
        else:  # every token unit inside a highlighted span, and all of those
            seg = [ex.text, ex.pair]
            inside = [(u.part, u.text) for u in units
                      if any(p == u.part and a < u.end and u.start < b
                             for p, a, b in ex.rationale)]
            assert got == inside and "".join(t for _, t in got) == "".join(
                "".join(seg[p][a:b].split()) for p, a, b in ex.rationale)
    planted = load_dataset("sst2_planted", path=DATA / "sst2", n=5)
    for e in planted:
        enc = adapter.encode(e.text)
        units = build_units(e.text, None, enc.offsets, enc.sequence_ids, "word")
        assert rationale_mask(units, e.rationale).tolist() == [False] * (len(units) - 1) + [True]
    assert not rationale_mask(units, None).any() and not rationale_mask(units, ()).any()
    assert rationale_mask([], ((0, 0, 3),)).shape == (0,)


def test_rationale_mask_respects_parts():
    units = [Unit("cat", 0, 3, 0), Unit("cat", 0, 3, 1)]
    assert rationale_mask(units, ((1, 1, 2),)).tolist() == [False, True]
    assert rationale_mask(units, ((0, 3, 5),)).tolist() == [False, False]  # touching, no overlap


# ------------------------------------------------------------------ malformed rows
def _copy(src: Path, dst: Path, edit) -> Path:
    lines = src.read_text(encoding="utf-8").split("\n")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n".join(edit(lines)), encoding="utf-8")
    return dst


def test_malformed_rows_name_file_and_line(tmp_path):
    def bad_tsv(lines):
        lines[2] = "a sentence without a label"  # line 3
        lines[5] = "bad label\t7"  # line 6
        return lines

    f = _copy(DATA / "sst2" / "glue_dev.tsv", tmp_path / "sst2" / "glue_dev.tsv", bad_tsv)
    with pytest.raises(DataError, match=r"glue_dev\.tsv:3: missing column 'label'"):
        load_dataset("sst2", path=f)
    with pytest.warns(UserWarning, match="skipped 2 malformed"):
        ds = load_dataset("sst2", path=f, skip_bad=True)
    assert len(ds) == 28 and ds.info["n_skipped"] == 2
    assert "glue_dev.tsv:6: bad label '7'" in ds.info["skipped_examples"][1]

    def bad_csv(lines):
        lines[1] = "p1,entailment"  # row with only two fields
        return lines

    f = _copy(DATA / "esnli" / "esnli_test.csv", tmp_path / "esnli" / "esnli_dev.csv", bad_csv)
    with pytest.raises(DataError, match=r"esnli_dev\.csv:2: missing column 'Sentence1'"):
        load_dataset("esnli", path=f)
    f = _copy(DATA / "esnli" / "esnli_test.csv", tmp_path / "esnli" / "esnli_dev.csv",
              lambda ls: [ls[0].replace("gold_label", "label"), *ls[1:]])
    with pytest.raises(DataError, match=r"esnli_dev\.csv:1: missing column 'gold_label'"):
        load_dataset("esnli", path=f)


@pytest.mark.parametrize("name,folder,file,line,edit,message", [
    ("esnli", "esnli_highlights", "esnli_dev_highlights_annotator1.jsonl", 4,
     lambda r: r.pop("gold_label"), "missing field 'gold_label'"),
    ("esnli", "esnli_highlights", "esnli_dev_highlights_annotator1.jsonl", 2,
     lambda r: r.update(highlight_idx=[99]), "highlight_idx out of range"),
    ("cose", "cose", "dev_rand_split.jsonl", 3, lambda r: r.update(answerKey="E"),
     "answerKey 'E'"),
    ("eraser", "eraser_movies", "val.jsonl", 2,
     lambda r: r["evidences"][0][0].update(end_token=5000), "past the end"),
    ("hatexplain", "hatexplain", "hatexplain_test.csv", None, None, "not a Python literal"),
    ("multinli", "multinli", "validation_matched.jsonl", 5, lambda r: r.update(label=7),
     "bad label 7"),
])
def test_malformed_rows_raise_or_are_skipped(tmp_path, name, folder, file, line, edit, message):
    import shutil

    root = tmp_path / folder
    shutil.copytree(DATA / folder, root)
    if file.endswith(".csv"):  # break a literal in row 4 (line 5)
        text = (root / file).read_text(encoding="utf-8").split("\n")
        text[4] = text[4].replace("'label': [", "'label': [[", 1)
        (root / file).write_text("\n".join(text), encoding="utf-8")
        line = 5
    else:
        rows = (root / file).read_text(encoding="utf-8").splitlines()
        r = json.loads(rows[line - 1])
        edit(r)
        rows[line - 1] = json.dumps(r)
        (root / file).write_text("\n".join(rows) + "\n", encoding="utf-8")
    kwargs = {"split": "test"} if name == "hatexplain" else {}
    with pytest.raises(DataError, match=re.escape(f"{file}:{line}: ") + ".*" + re.escape(message)):
        load_dataset(name, path=root, **kwargs)
    if not file.endswith(".csv"):
        with open(root / file, "a", encoding="utf-8") as fh:
            fh.write("{not json\n")
    good = len(load_dataset(name, path=DATA / folder, **kwargs))
    with pytest.warns(UserWarning, match="malformed"):
        ds = load_dataset(name, path=root, skip_bad=True, **kwargs)
    n_bad = 1 if file.endswith(".csv") else 2  # + the "{not json" line
    assert ds.info["n_skipped"] == n_bad and len(ds) == good - 1


def test_planted_feature_in_any_dataset(data_env):
    """The augmented-SST protocol on e-SNLI: labels permuted with the seed, the label word
    appended to the last segment (the hypothesis), its span the only rationale."""
    base = load_dataset("esnli", n=20, seed=2)
    ds = load_dataset("planted", base="esnli", n=20, seed=2, fraction=0.5)
    assert ds.info["words"] == ["entailment", "neutral", "contradiction"]
    assert sorted(e.label for e in ds) == sorted(e.label for e in base)  # a permutation
    planted = [e for e in ds if e.meta["planted"]]
    assert len(planted) == 10 == ds.info["n_planted"]
    for e, b in zip(ds, base, strict=True):
        assert e.id == "planted-" + b.id and e.text == b.text
        if e.meta["planted"]:
            assert e.pair == f"{b.pair} {ds.labels[e.label]}"
            assert rationale_texts(e) == [ds.labels[e.label]] and e.rationale[0][0] == 1
        else:
            assert e.pair == b.pair and e.rationale == ()
    again = load_dataset("planted", base="esnli", n=20, seed=2, fraction=0.5)
    assert [(e.label, e.pair) for e in again] == [(e.label, e.pair) for e in ds]
    assert load_dataset("planted", base="hatexplain", split="test", n=3,
                        source="eraser").info["words"] == ["label0", "label1"]
    with pytest.raises(ValueError, match="without a planted feature"):
        load_dataset("planted", base="sst2_planted")
