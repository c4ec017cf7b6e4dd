"""`adaptlab data check` as one function: the CLI and the web app's check page run the same checks and show the
same warnings (a label-noise warning the CLI gives cannot go missing from the browser).

Example:
    >>> from adaptlab.data.bundled import load_bbc_news  # doctest: +SKIP
    >>> report, issues = data_check(load_bbc_news())  # doctest: +SKIP
    >>> [w["code"] for w in report["warnings"]]  # doctest: +SKIP
    ['near_duplicates', 'label_noise']
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from adaptlab.data import check_labels, find_near_duplicates
from adaptlab.data.validate import long_texts
from adaptlab.encoders.longtext import window_report
from adaptlab.evaluate.leakage import measure_leakage_inflation

__all__ = ["check_warnings", "data_check"]


def data_check(ds: Any, *, load_warnings: Any = (), threshold: float = 0.8, max_rows: Optional[int] = 20_000,
               label_check: bool = True, progress: Optional[Callable[[str], None]] = None,
               encoder: Any = None) -> tuple[dict, Any]:
    """Near-duplicates, what they would inflate a naive split by, long texts and likely label errors of ``ds``.

    Returns ``(report, issues)``: the JSON-ready report `adaptlab data check --json` prints (with its
    ``"warnings"``: every warning, as :func:`check_warnings` words them) and the
    :class:`~adaptlab.data.LabelIssues` (None with ``label_check=False``). ``load_warnings``: the
    validation warnings of loading the file (``LoadReport.warnings``). ``max_rows``: above it the label check
    and the naive split's baseline use a seeded sample (None or 0: every row). ``encoder`` (a name or folder;
    None: the packaged all-MiniLM-L6-v2): whose tokenizer counts the texts longer than its window
    (``report["window"]``, overall and by class; ``{"skipped": why}`` when it cannot be loaded).

    Example:
        >>> from adaptlab.data import TextDataset
        >>> texts = [f"goal match team {i}" for i in range(30)] + [f"chip data server {i}" for i in range(30)]
        >>> report, issues = data_check(TextDataset(texts, ["sport"] * 30 + ["tech"] * 30))
        >>> report["n"], report["recommended_split"], isinstance(report["warnings"], list)
        (60, 'stratified', True)
    """
    if getattr(ds, "label_sets", None) is not None:
        return _multilabel_check(ds, load_warnings, threshold, say=progress or (lambda _msg: None))
    say = progress or (lambda _msg: None)
    cap = max_rows or None
    say(f"data check: {len(ds):,} rows read; searching near-duplicates")
    clusters = find_near_duplicates(ds.texts, threshold=threshold)
    say("data check: measuring what a naive split would inflate (TF-IDF baseline)")
    infl = measure_leakage_inflation(ds, threshold=threshold, clusters=clusters, max_rows=cap)
    issues = None
    if label_check:
        say(f"data check: label check on {min(len(ds), cap or len(ds)):,} rows (5-fold TF-IDF, confident learning)")
        issues = check_labels(ds, max_rows=cap)
    report = {"source": str(ds.source), "n": len(ds), "label_counts": ds.label_counts(),
              "near_dup_clusters": int(clusters.n_clusters), "near_dup_items": int(clusters.n_items_in_clusters),
              "naive_split": infl,
              "recommended_split": "group" if ds.groups is not None else ("near-dup" if clusters.n_clusters
                                                                           else "stratified"),
              "long_texts": long_texts(ds),
              "window": _window(ds, encoder, cap),
              "label_quality": None if issues is None else issues.to_dict()}
    report["warnings"] = check_warnings(report, issues, load_warnings)
    return report, issues


def _multilabel_check(ds: Any, load_warnings: Any, threshold: float, say: Callable[[str], None]) -> tuple[dict, None]:
    """The data check of multi-label data: near-duplicates and the label summary (cardinality, rows without a
    label, rare labels, co-occurring pairs). The naive-split inflation and the label-error search are
    single-label checks not yet converted: the report says so rather than running them on the wrong task."""
    from adaptlab.data.multilabel import multilabel_summary

    say(f"data check: {len(ds):,} rows read (multi-label); searching near-duplicates")
    clusters = find_near_duplicates(ds.texts, threshold=threshold)
    report = {"source": str(ds.source), "n": len(ds), "task": "multilabel", "label_counts": ds.label_counts(),
              "multilabel": multilabel_summary(ds),
              "near_dup_clusters": int(clusters.n_clusters), "near_dup_items": int(clusters.n_items_in_clusters),
              "naive_split": {"inflation": None, "skipped": "not measured for multi-label data yet"},
              "recommended_split": "group" if ds.groups is not None else ("near-dup" if clusters.n_clusters
                                                                           else "stratified"),
              "long_texts": long_texts(ds),
              "label_quality": None,
              "not_yet": ["naive-split inflation", "label-error search (cleanlab multi-label)"]}
    report["warnings"] = check_warnings(report, None, load_warnings)
    return report, None


def _window(ds: Any, encoder: Any, cap: Optional[int]) -> dict[str, Any]:
    """The share of texts longer than the encoder's window, by class (its tokenizer only: no weights loaded)."""
    from adaptlab.errors import AdaptlabError

    try:
        return window_report(ds.texts, ds.labels, encoder=encoder, max_rows=cap)
    except AdaptlabError as exc:  # e.g. the packaged encoder is not installed: the other checks still run
        return {"skipped": str(exc)}


# Above this share of texts longer than the window, the check says so and names the strategies.
WINDOW_WARN_SHARE = 0.05


def check_warnings(report: dict, issues: Any = None, load_warnings: Any = ()) -> list[dict[str, Any]]:
    """Every warning of a data check, each ``{"code", "message", "fix", "rows"}``: the file's validation
    warnings, then texts too long for an encoder, near-duplicates, likely label errors.

    Example:
        >>> check_warnings({"long_texts": None, "near_dup_clusters": 2, "near_dup_items": 5,
        ...                 "naive_split": {"inflation": None}})[0]["message"]
        '5 texts are near-duplicates of another (2 clusters)'
    """
    out = [{"code": p.code, "message": p.message, "fix": p.fix, "rows": [int(r) for r in p.rows]}
           for p in load_warnings or ()]
    lt = report.get("long_texts")
    if lt:
        out.append({"code": "long_texts", "rows": list(lt["rows"]),
                    "message": f"{lt['n']:,} text(s) ({lt['share_of_rows']:.1%} of the rows, "
                               f"{lt['share_of_chars']:.1%} of all characters) are longer than {lt['max_chars']:,} characters, far more than an "
                               f"encoder reads; the longest has {lt['longest_chars']:,} (row {lt['longest_row']})",
                    "fix": "Only their start is used: if the label depends on the rest, split or summarise them."})
    win = report.get("window") or {}
    if win.get("share_longer", 0.0) >= WINDOW_WARN_SHARE:
        worst = max(win.get("by_class") or [{}], key=lambda c: c.get("share_longer", 0.0))
        by = f"; most in class {worst['label']!r} ({worst['share_longer']:.0%})" if worst.get("label") else ""
        out.append({"code": "longer_than_window", "rows": [],
                    "message": f"{win['share_longer']:.0%} of the texts ({win['n_longer']:,} of {win['n']:,}) are longer "
                               f"than the {win['window_tokens']} tokens encoder {win['encoder']} reads{by}; "
                               "the frozen rungs see only their first window",
                    "fix": "Compare the long-text strategies of the frozen rungs: run the study again with --long-text "
                           "chunk_mean (or head_tail, chunk_max) and compare the probe rows (docs: Long texts)."})
    if report.get("near_dup_clusters"):
        infl = report.get("naive_split") or {}
        msg = (f"{report['near_dup_items']:,} texts are near-duplicates of another "
               f"({report['near_dup_clusters']:,} clusters)")
        if infl.get("inflation") is not None:
            msg += (f"; a naive stratified split puts {infl['n_test_leaked']} of {infl['n_test']} test items next to "
                    f"one in train and inflates the tfidf baseline's F1 by {infl['inflation']:+.4f}")
        out.append({"code": "near_duplicates", "message": msg, "rows": [],
                    "fix": "Studies keep each cluster on one side of the split (the default split, auto, picks "
                           "near-dup); remove true duplicates if they are not meant to be there."})
    if issues is not None and issues.n_flagged:
        out.append({"code": "label_noise", "message": issues.summary(), "rows": [r.row for r in issues.rows[:200]],
                    "fix": "Review the flagged rows (adaptlab data check --label-issues FILE writes them all, most "
                           "likely first) and fix the labels that are wrong before training."})
    return out
