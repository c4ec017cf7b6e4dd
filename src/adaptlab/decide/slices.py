"""Per-slice F1 of a stored study: where the errors are, and whether the rare-slice switch rule fires.

Slices come from a user column (e.g. subtopic, source) or, when there is none, from KMeans clusters of
the test texts' embeddings (named by their most distinctive words). The predictions are the stored
per-item test predictions of the chosen rung (all seeds), so no model is retrained.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.data import TextDataset
from adaptlab.decide.policy import Policy, rare_failing_slices
from adaptlab.decide.slice_noise import noisy_slice_words, slice_label_noise  # noqa: F401 (public here too)
from adaptlab.errors import AdaptlabError, ConfigError


def slice_table(
    y_true: Sequence[str], preds_by_seed: Sequence[Sequence[str]], slice_of: Sequence[str], classes: Sequence[str],
    positive: Optional[str],
) -> tuple[list[dict[str, Any]], float]:
    """F1 per slice (mean over seeds), its share of items and of errors; plus the overall F1.

    Example:
        >>> rows, overall = slice_table(["a", "a", "b", "b"], [["a", "a", "b", "a"]], ["x", "x", "y", "y"], ["a", "b"], None)
        >>> [(r["slice"], r["errors"]) for r in rows]
        [('y', 1.0), ('x', 0.0)]
    """
    from adaptlab.metrics import score

    y = np.asarray(y_true, dtype=object)
    s = np.asarray([str(v) for v in slice_of], dtype=object)
    preds = [np.asarray(p, dtype=object) for p in preds_by_seed]
    n = len(y)
    overall = float(np.mean([score(y, p, None, classes, positive)["f1"] for p in preds]))
    total_errors = float(np.mean([np.sum(p != y) for p in preds]))
    rows = []
    for name in sorted(set(s.tolist())):
        m = s == name
        # Macro-F1 over the classes the slice holds (or is predicted as): a class absent from a slice would
        # otherwise count as F1 0 and make a perfectly predicted one-class slice look like a failing one.
        present = sorted(set(y[m].tolist()).union(*(set(p[m].tolist()) for p in preds)))
        f1 = float(np.mean([score(y[m], p[m], None, present if positive is None else classes, positive)["f1"]
                            for p in preds]))
        acc = float(np.mean([np.mean(p[m] == y[m]) for p in preds]))
        errs = float(np.mean([np.sum(p[m] != y[m]) for p in preds]))
        rows.append({"slice": name, "n": int(m.sum()), "share": float(m.sum() / n), "f1": f1, "accuracy": acc,
                     "errors": errs, "error_share": errs / total_errors if total_errors else 0.0,
                     "labels": dict(Counter(y[m].tolist()))})
    rows.sort(key=lambda r: (r["f1"], -r["n"]))
    return rows, overall


def _flagged_per_slice(rows: list[dict[str, Any]], full: TextDataset, values: Sequence[str], test_ids: Sequence[str],
                       label_quality: Optional[dict[str, Any]]) -> None:
    """Put the label check's flagged train-pool rows into the slices (column slices only): ``label_flagged``
    of ``label_checked`` (the slice's train-pool rows, scaled by the checked share when the check sampled)."""
    lq = label_quality or {}
    flagged = lq.get("flagged_ids")
    if flagged is None or not lq.get("n"):
        return
    test = set(map(str, test_ids))
    pool = [i for i, ident in enumerate(full.ids) if str(ident) not in test]
    if not pool:
        return
    share = min(1.0, float(lq["n"]) / float(lq.get("n_total") or len(pool)))
    slice_of = {str(full.ids[i]): str(values[i]) for i in pool}
    n_pool = Counter(slice_of.values())
    n_flag = Counter(slice_of[str(i)] for i in flagged if str(i) in slice_of)
    for r in rows:
        if n_pool.get(r["slice"]):
            r["label_checked"] = n_pool[r["slice"]] * share
            r["label_flagged"] = int(n_flag.get(r["slice"], 0))


def cluster_slices(texts: Sequence[str], embeddings: np.ndarray, *, n_clusters: int = 8, seed: int = 0) -> list[str]:
    """KMeans clusters of embeddings, each named by its three most over-represented words."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    k = max(2, min(n_clusters, len(texts) // 10 or 2))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(np.asarray(embeddings, dtype=np.float64))
    try:
        vec = TfidfVectorizer(max_features=5000, stop_words="english", min_df=1)
        X = vec.fit_transform(texts)
        vocab = np.asarray(vec.get_feature_names_out())
        overall = np.asarray(X.mean(axis=0)).ravel()
    except ValueError:  # empty vocabulary (e.g. only stop words)
        X, vocab, overall = None, None, None
    names = {}
    for c in range(k):
        top = ""
        if X is not None:
            m = labels == c
            lift = np.asarray(X[m].mean(axis=0)).ravel() - overall
            top = ", ".join(vocab[np.argsort(-lift)[:3]])
        names[c] = f"cluster {c}" + (f": {top}" if top else "")
    return [names[c] for c in labels]


def slice_report(
    store: Any,
    study_id: str,
    data: TextDataset,
    *,
    test: Optional[TextDataset] = None,
    rung: Optional[str] = None,
    slice_values: Optional[Sequence[str]] = None,
    encoder: Any = None,
    n_clusters: int = 8,
    policy: Optional[Policy] = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-slice F1 of ``rung`` (default: the decision's choice) on a stored study's sealed test items.

    ``data`` (and ``test`` if the study had a test file) must be what the study ran on: the stored
    predictions are matched to texts by item id. ``slice_values`` gives each item of ``data`` (then of
    ``test``) its slice; without it the test texts are clustered in the study encoder's embedding space.

    Returns a JSON-safe dict: ``rung``, ``source`` ("column" | "kmeans"), ``overall_f1``, ``slices``
    (worst first) and ``rare_failing`` (the slices that fire the rare-slice switch rule).

    Example:
        >>> from adaptlab.config import StudyConfig
        >>> from adaptlab.data import TextDataset
        >>> from adaptlab.decide import slice_report
        >>> from adaptlab.evaluate import Study
        >>> from adaptlab.store import RunStore
        >>> texts = ([f"goal match team player {i}" for i in range(30)]
        ...          + [f"chip software data server {i}" for i in range(30)])
        >>> data = TextDataset(texts, ["sport"] * 30 + ["tech"] * 30)
        >>> result = Study(StudyConfig(rungs=["tfidf"], seeds=2, n_boot=200), home="runs").run(data)
        >>> region = ["north" if i % 3 else "south" for i in range(60)]        # a column of your data
        >>> report = slice_report(RunStore("runs/runs.sqlite"), result.study_id, data, rung="tfidf", slice_values=region)
        >>> report["source"], sorted(s["slice"] for s in report["slices"]), report["overall_f1"]
        ('column', ['north', 'south'], 1.0)
    """
    from adaptlab.decide.decision import decide
    from adaptlab.decide.evidence import Evidence
    from adaptlab.evaluate.study import _concat

    p = policy or Policy()
    rec = store.get_study(study_id)
    ev = Evidence.from_store(store, rec["study_id"], analyses=False)
    if rung is None:
        rung = decide(ev, p).chosen or next(iter(ev.rungs))
    if rung not in ev.rungs or ev.rungs[rung].predictions is None:
        raise ConfigError.invalid("rung", rung, f"a rung of study {rec['study_id'][:12]} with stored predictions: "
                                  f"{', '.join(r for r in ev.rungs if ev.rungs[r].predictions is not None)}")
    full = _concat(data, test) if test is not None else data
    if slice_values is not None:
        values = list(slice_values)
        if len(values) != len(full):
            raise ConfigError(f"slice values cover {len(values)} items; the data has {len(full)}.")
    results = store.study_results(rec["study_id"])
    test_ids = next(r["predictions"]["test_ids"] for r in results if r["rung"] == rung)
    pos = {i: k for k, i in enumerate(full.ids)}
    missing = [i for i in test_ids if i not in pos]
    if missing:
        raise AdaptlabError(f"{len(missing)} stored test item(s) (e.g. {missing[0]!r}) are not in the data given; pass "
                            "the same --data (and --test) files the study ran on.")
    idx = [pos[i] for i in test_ids]
    if slice_values is not None:
        slice_of = [str(values[i]) for i in idx]
        source = "column"
    else:
        if encoder is None:
            from adaptlab.encoders import load_encoder

            encoder = load_encoder((rec.get("config") or {}).get("encoder"))
        from adaptlab.encoders import EmbeddingCache, embed

        texts = [full.texts[i] for i in idx]
        cache = EmbeddingCache(store.path.parent / "cache" / "embeddings.sqlite")
        slice_of = cluster_slices(texts, embed(encoder, texts, cache=cache), n_clusters=n_clusters, seed=seed)
        source = "kmeans"
    preds = [ev.rungs[rung].predictions[s] for s in sorted(ev.rungs[rung].predictions)]
    rows, overall = slice_table(ev.y_true, preds, slice_of, ev.classes, ev.positive_label)
    lq = (((rec.get("summary") or {}).get("data") or {}).get("label_quality"))
    if slice_values is not None:
        _flagged_per_slice(rows, full, values, test_ids, lq)
    for r in rows:
        est = slice_label_noise(r, lq)
        if est is not None:
            r["label_noise"] = est["rate"]
    bad = rare_failing_slices(rows, overall, p)
    worst = rows[0] if rows else None
    summary = (f"worst slice of {rung}: {worst['slice']} (F1 {worst['f1']:.3f} on {worst['n']} items vs "
               f"{overall:.3f} overall)" if worst else "no slices")
    if bad:
        summary += (f"; {len(bad)} rare slice(s) hold a concentrated share of the errors: collect more labels there, "
                    "not a bigger model")
        noisy = [f"{b['slice']}: {w}" for b in bad for w in [noisy_slice_words(b, lq, p)] if w]
        if noisy:
            summary += "; but " + "; ".join(noisy)
    return {"rung": rung, "source": source, "overall_f1": overall, "n_test": len(idx), "slices": rows,
            "rare_failing": [b["slice"] for b in bad], "summary": summary + "."}
