"""Tiny random sentence-transformers models built on the spot (no download), for fast tests.

``build_tiny_encoder(folder, seed=0)`` writes a 2-layer, 32-dim BERT with a word-piece vocabulary
that can tokenize any English text, in the exact folder layout sentence-transformers saves, so both
``adaptlab.encoders.Encoder.from_pretrained`` and ``sentence_transformers.SentenceTransformer`` load it.
"""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Union

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Common English words plus the words of the BBC-like sentences the tests use, so that most text
# becomes whole-word tokens and the rest falls back to letters and "##" pieces.
COMMON_WORDS = """
the of and to a in is it you that he was for on are with as i his they be at one have this from
or had by not word but what some we can out other were all there when up use your how said an
each she which do their time if will way about many then them write would like so these her long
make thing see him two has look more day could go come did number sound no most people my over
know water than call first who may down side been now find any new work part take get place made
live where after back little only round man year came show every good me give our under name very
through just form sentence great think say help low line differ turn cause much mean before move
right boy old too same tell does set three want air well also play small end put home read hand
port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father
market company bank shares profit sales growth economy government minister election party vote
labour film music award star show game match team player cup win won lost goal season club coach
technology phone software computer internet online users mobile digital data net firm deal price
rise fall rate rates news report told bbc uk us china europe week month today last next million
""".split()


def tiny_vocab() -> list[str]:
    """The vocabulary: special tokens, single characters, their ``##`` pieces, then common words."""
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = SPECIAL_TOKENS + chars + ["##" + c for c in string.ascii_lowercase + string.digits]
    seen = set(vocab)
    for word in COMMON_WORDS:
        if word not in seen:
            vocab.append(word)
            seen.add(word)
    return vocab


def build_tiny_encoder(
    folder: Union[str, Path],
    seed: int = 0,
    *,
    pooling: str = "mean",
    normalize: bool = True,
    max_seq_length: int = 64,
    hidden_size: int = 32,
) -> Path:
    """Write a tiny random BERT sentence-transformers model into ``folder`` and return the path.

    Different ``seed`` values give different weights (and so different fingerprints).
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    # transformers 5 ignores `vocab_file=` (the tokenizer would know only its 5 special tokens and turn
    # every word into [UNK]); pass the vocabulary itself.
    tokenizer = BertTokenizerFast(
        vocab={w: i for i, w in enumerate(tiny_vocab())}, do_lower_case=True, model_max_length=128
    )
    tokenizer.save_pretrained(str(folder))

    config = BertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        vocab_size=len(tiny_vocab()),
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    model = BertModel(config)
    model.save_pretrained(str(folder), safe_serialization=True)

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": hidden_size,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_max_tokens": pooling == "max",
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        )
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    return folder
