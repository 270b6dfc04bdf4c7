"""Session-scoped tiny random classifiers, built offline from the vendored assets.

* ``bert_adapter``: WordPiece tokenizer (BERT uncased vocab) + 2-layer BertForSequenceClassification
* ``roberta_adapter``: byte-level BPE tokenizer trained here on SST-2 lines + 3-label Roberta
* ``llama_adapter``: SentencePiece tokenizer of stories260K + 2-layer LlamaForSequenceClassification
* ``linear_adapter``: :class:`helpers.LinearBag` (known answers) + the BERT tokenizer

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
from helpers import ASSETS, LinearBag  # noqa: E402

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
