"""Session-scoped tiny random classifiers, built offline from the vendored assets.

* ``bert_adapter``: WordPiece tokenizer (BERT uncased vocab) + 2-layer BertForSequenceClassification
* ``roberta_adapter``: byte-level BPE tokenizer trained here on SST-2 lines + 3-label Roberta
* ``llama_adapter``: SentencePiece tokenizer of stories260K + 2-layer LlamaForSequenceClassification
* ``linear_adapter``: :class:`helpers.LinearBag` (known answers) + the BERT tokenizer

and, for the integration tests, the real pretrained MiniLM-L6 (``faithscope.demo.default_encoder``)
fine-tuned ONCE per session (see ``FineTuned``): ``sentiment_model`` (SST-2 sentiment) and
``planted_model`` (planted-feature SST-2). Fine-tuning is most of the suite's time, so the
recipes are the cheapest found that still reach the tests' accuracies with margin.

All use eager attention so the attention explainers can read attention weights. Weights are
initialised with a larger ``initializer_range`` than the default so that outputs (and thus
attributions) vary visibly between inputs, far above float32 noise.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

import faithscope as fs  # noqa: E402
from helpers import ASSETS, FineTuned, LinearBag, save_tiny  # noqa: E402

# The models are tiny: one thread is fastest, and immune to oversubscription when other
# processes share the machine.
torch.set_num_threads(1)
INIT_RANGE = 0.3


def sst2_lines(n: int = 300) -> list[str]:
    rows = (ASSETS / "sst2_small.tsv").read_text(encoding="utf-8").splitlines()[1 : n + 1]
    return [r.split("\t")[0].strip() for r in rows]


def make_bert_tokenizer():
    from transformers import BertTokenizerFast

    # transformers 5 takes the vocabulary (a path or a dict) as ``vocab``
    return BertTokenizerFast(vocab=str(ASSETS / "bert_vocab.txt"))


def make_bpe_tokenizer():
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer(trim_offsets=True)
    bpe.train_from_iterator(sst2_lines(), vocab_size=600, min_frequency=2,
                            special_tokens=specials, show_progress=False)
    bpe.post_processor = RobertaProcessing(("</s>", bpe.token_to_id("</s>")),
                                           ("<s>", bpe.token_to_id("<s>")), trim_offsets=True)
    return RobertaTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                pad_token="<pad>", mask_token="<mask>")


def make_sp_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ASSETS / "stories260K")


@pytest.fixture(scope="session")
def bert_tokenizer():
    return make_bert_tokenizer()


@pytest.fixture(scope="session")
def bpe_tokenizer():
    return make_bpe_tokenizer()


@pytest.fixture(scope="session")
def sp_tokenizer():
    return make_sp_tokenizer()


@pytest.fixture(scope="session")
def bert_adapter(bert_tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, num_labels=2,
                     max_position_embeddings=128, initializer_range=INIT_RANGE,
                     attn_implementation="eager")
    model = BertForSequenceClassification(cfg)
    return fs.ModelAdapter(model, bert_tokenizer, model_id="tiny-bert")


@pytest.fixture(scope="session")
def roberta_adapter(bpe_tokenizer):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    tok = bpe_tokenizer
    torch.manual_seed(1)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=3,
                        max_position_embeddings=130, type_vocab_size=1,
                        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, initializer_range=INIT_RANGE,
                        attn_implementation="eager")
    model = RobertaForSequenceClassification(cfg)
    return fs.ModelAdapter(model, tok, model_id="tiny-roberta")


@pytest.fixture(scope="session")
def llama_adapter():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tok = make_sp_tokenizer()  # the adapter sets its pad token: keep it private
    torch.manual_seed(2)
    cfg = LlamaConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                      num_labels=2, max_position_embeddings=256,
                      pad_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, initializer_range=INIT_RANGE,
                      attn_implementation="eager")
    model = LlamaForSequenceClassification(cfg)
    return fs.ModelAdapter(model, tok, model_id="tiny-llama")


@pytest.fixture(scope="session")
def linear_adapter(bert_tokenizer):
    return fs.ModelAdapter(LinearBag(num_labels=2), bert_tokenizer, model_id="linear-bag")


@pytest.fixture(scope="session")
def adapters(bert_adapter, roberta_adapter, llama_adapter):
    """The three tiny transformer classifiers by short name."""
    return {"bert": bert_adapter, "roberta": roberta_adapter, "llama": llama_adapter}


# ------------------------------------------------ real MiniLM-L6, fine-tuned once per session
# Measured on a 2-core machine shared with other jobs (torch at this suite's 1 thread; 2 threads
# were 1.3-2x SLOWER there, the OpenMP workers waiting on a busy core): the former per-module
# recipes (600 / 800 sentences of any length, 2 epochs, batch 32, 2 threads) took 190-270 s each;
# these take ~20 s and ~10 s. Besides their size: a few long sentences padded every random batch
# to 40-60 tokens (the median is ~12), so short sentences do the same job at a third of the cost.
# Sentiment trains only the last 2 of 6 layers (+ pooler, head): half the time of a full
# fine-tune (~35 s) and, over recipe seeds 0-2, dev accuracy 0.74-0.76 (full: 0.72-0.76).
SENTIMENT_N_TRAIN = 640  # the tests need dev accuracy >= 0.68
SENTIMENT_RECIPE = {"epochs": 1, "batch_size": 16, "lr": 3e-4, "seed": 0, "train_layers": 2}
PLANTED_N_TRAIN = 128  # planted dev accuracy 1.0 over seeds 0-2 (tests need >= 0.95)
PLANTED_RECIPE = {"epochs": 1, "batch_size": 16, "lr": 3e-4, "seed": 0}


def _short(examples, n: int, *, min_words: int = 1, max_words: int) -> list:
    """The first ``n`` examples with ``min_words`` to ``max_words`` words (in input order)."""
    out = [ex for ex in examples if min_words <= len(ex.text.split()) <= max_words][:n]
    assert len(out) == n, f"only {len(out)} short examples"
    return out


@pytest.fixture(scope="session")
def finetune_cache(tmp_path_factory):
    """This session's fine-tuning cache: every fixture trains for real (``info["cached"]`` is
    False) exactly once."""
    return tmp_path_factory.mktemp("finetuned")


@pytest.fixture(scope="session")
def sentiment_model(finetune_cache) -> FineTuned:
    """MiniLM-L6, last 2 layers fine-tuned on 640 short bundled SST-2 train sentences (1 epoch);
    ``dev``: the 100 sentences of ``tests/assets/sst2_dev_small.tsv``."""
    from faithscope.data import bundled_sst2, read_table
    from faithscope.demo import default_encoder
    from faithscope.models.finetune import Recipe, finetune

    train = _short(bundled_sst2("train"), SENTIMENT_N_TRAIN, min_words=3, max_words=12)
    dev = read_table(ASSETS / "sst2_dev_small.tsv", id_prefix="dev")
    model, info = finetune(default_encoder(), train, dev=dev, recipe=Recipe(**SENTIMENT_RECIPE),
                           cache_dir=finetune_cache, device="cpu")
    return FineTuned(model, info, tuple(train), tuple(dev))


@pytest.fixture(scope="session")
def planted_model(finetune_cache) -> FineTuned:
    """MiniLM-L6 fine-tuned on 128 short ``sst2_planted`` train sentences (labels permuted, the
    label word appended: the only predictive feature); ``dev``: 50 planted dev sentences."""
    from faithscope.data import load_dataset
    from faithscope.demo import default_encoder
    from faithscope.models.finetune import Recipe, finetune

    data = load_dataset("sst2_planted", bundled=True, split="train", n=800, seed=0)
    train = _short(data.examples, PLANTED_N_TRAIN, max_words=10)
    dev = load_dataset("sst2_planted", bundled=True, split="dev", n=50, seed=0)
    model, info = finetune(default_encoder(), train, labels=data.labels, dev=list(dev.examples),
                           recipe=Recipe(**PLANTED_RECIPE), cache_dir=finetune_cache,
                           device="cpu")
    return FineTuned(model, info, tuple(train), dev.examples)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random BERT classifier saved to a folder (as a user's checkpoint would be)."""
    return str(save_tiny(tmp_path_factory.mktemp("tiny-model"), seed=3))


def _chromium() -> str | None:
    import shutil
    from pathlib import Path

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (a system Chromium; skipped without one)."""
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium binary found (apt-get install chromium); browser tests skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def ray_serial():
    """Tests that start a local Ray cluster run one at a time across pytest-xdist workers."""
    import tempfile

    from filelock import FileLock

    with FileLock(os.path.join(tempfile.gettempdir(), "faithscope-tests-ray.lock")):
        yield
