"""Bias audit for a user-given group column (region, source, language, author type, ...).

:func:`bias_audit` answers two questions:

1. **Does the model work worse for some group?** Per group: n, accuracy, F1 (the task's headline
   F1 from :func:`adaptlab.metrics.score`: positive-class F1 for binary tasks, macro-F1
   otherwise), and per class the true rate, the predicted rate and the recall; each with its gap to
   the overall value. A percentile bootstrap (resampling the group's items, seeded) gives a CI of
   the group's F1; a group whose whole CI lies below the overall F1 is *significantly worse*.
2. **Do the embeddings tie a group to a class?** WEAT-style association: for each group and class,
   the mean cosine similarity of the group's texts to the class centroid minus that of the other
   groups' texts, divided by the SD over all texts (an effect size, like Cohen's d), with a
   permutation p-value (group labels shuffled). The *raw* effect also picks up base rates (a group
   with more "spam" items naturally sits nearer the spam centroid), so a *label-adjusted* effect is
   computed on similarities centred within each true class, with group labels shuffled within each
   class; that one flags "this group's texts lean toward class c even at equal labels" and drives
   ``significant`` (Bonferroni over groups x classes).

Example:
    >>> y_true = ["pos", "neg"] * 50
    >>> y_pred = y_true[:80] + ["neg"] * 20                     # the last 20 items: positives missed
    >>> groups = ["A"] * 80 + ["B"] * 20
    >>> report = bias_audit(y_true, y_pred, groups, n_boot=200)
    >>> report.worst_group
    'B'
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from adaptlab.errors import ConfigError
from adaptlab.metrics import resolve_positive_label, score, weighted_f1
from adaptlab.monitor._common import as_matrix, check_fraction, check_int, fnum, l2_normalize

MISSING_GROUP = "(missing)"
#: Bootstrap weights held at once (replicates x items) when computing a group's F1 CI.
_BOOT_ENTRIES = 4_000_000


def _as_labels(name: str, values: Any, n: Optional[int] = None) -> np.ndarray:
    if isinstance(values, str) or not hasattr(values, "__len__"):
        raise ConfigError.invalid(name, values, "a list with one value per item")
    out = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise ConfigError(f"{name} has a missing value at item {i}; the audit needs a label for every item.")
        out.append(str(v))
    if n is not None and len(out) != n:
        raise ConfigError(f"{name} has {len(out)} values but y_true has {n}; pass one per item.")
    return np.asarray(out, dtype=object)


def _groups(values: Any, n: int) -> np.ndarray:
    if isinstance(values, str) or not hasattr(values, "__len__") or len(values) != n:
        size = len(values) if hasattr(values, "__len__") else "?"
        raise ConfigError.invalid("groups", f"{type(values).__name__} of length {size}", f"one group value per item ({n})")
    return np.asarray([MISSING_GROUP if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                       for v in values], dtype=object)


def _class_rates(yt: np.ndarray, yp: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, Optional[float]]]:
    out = {}
    for c in classes:
        t, p = yt == c, yp == c
        out[c] = {"true_rate": fnum(t.mean()), "predicted_rate": fnum(p.mean()),
                  "recall": fnum((t & p).sum() / t.sum()) if t.any() else None}
    return out


def _f1_ci(yt: np.ndarray, yp: np.ndarray, labels: list[str], positive: Optional[str], n_boot: int, level: float,
           rng: np.random.Generator) -> tuple[Optional[float], Optional[float]]:
    n = len(yt)
    classes = labels if positive is None else [positive]
    block = max(1, _BOOT_ENTRIES // n)
    stats = []
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        stats.append(weighted_f1(W, yt, yp, classes, positive))
    s = np.concatenate(stats)
    lo, hi = np.quantile(s, [(1 - level) / 2, 1 - (1 - level) / 2])
    return fnum(lo), fnum(hi)


@dataclass
class BiasReport:
    """Per-group metrics with gaps and CIs, and embedding-association gaps (when embeddings were given).

    Example:
        >>> from adaptlab.monitor import bias_audit
        >>> y_true = ["pos", "neg"] * 40
        >>> y_pred = y_true[:40] + ["pos"] * 40                     # right for group a, always "pos" for group b
        >>> report = bias_audit(y_true, y_pred, ["a"] * 40 + ["b"] * 40, n_boot=200, min_group_size=10)
        >>> report.worst_group, [round(g["f1"], 2) for g in report.groups]
        ('b', [1.0, 0.67])
    """

    classes: list[str]
    positive: Optional[str]
    overall: dict[str, Any]
    groups: list[dict[str, Any]]
    associations: Optional[list[dict[str, Any]]]
    worst_group: Optional[str]
    alpha: float
    ci_level: float
    min_group_size: int
    seed: int

    def group(self, name: str) -> dict[str, Any]:
        """The row of group ``name`` (KeyError if there is none)."""
        for g in self.groups:
            if g["group"] == name:
                return g
        raise KeyError(name)

    @property
    def metric_name(self) -> str:
        """The metric compared across groups: positive-class F1 or macro-F1."""
        return f"F1 of {self.positive!r}" if self.positive is not None else "macro-F1"

    @property
    def significantly_worse(self) -> list[str]:
        """The groups the audit marks ``significantly_worse``."""
        return [g["group"] for g in self.groups if g["significantly_worse"]]

    @property
    def summary(self) -> str:
        """Plain-words summary naming the worst group."""
        pct = f"{100 * self.ci_level:.0f}%"
        of = self.overall["f1"]
        parts = []
        if self.worst_group is None:
            parts.append(f"No group has a defined {self.metric_name}; nothing to compare.")
        else:
            g = self.group(self.worst_group)
            ci = f"{pct} CI {g['f1_ci'][0]:.2f}-{g['f1_ci'][1]:.2f}"
            if g["significantly_worse"]:
                parts.append(f"Worst group: {g['group']!r} (n={g['n']}): {self.metric_name} {g['f1']:.2f} ({ci}) vs "
                             f"{of:.2f} overall, significantly below the overall level.")
            else:
                parts.append(f"No group is significantly below the overall {self.metric_name} ({of:.2f}); the "
                             f"weakest is {g['group']!r} (n={g['n']}): {g['f1']:.2f} ({ci}).")
            lg = g["largest_gap"]
            if lg is not None:
                parts.append(f"Its largest gap: {lg['metric']} {lg['group_value']:.2f} vs {lg['overall_value']:.2f} "
                             f"overall ({lg['gap']:+.2f}).")
            others = [x for x in self.significantly_worse if x != self.worst_group]
            if others:
                parts.append(f"Also significantly below overall: {', '.join(repr(x) for x in others)}.")
        small = [g["group"] for g in self.groups if g["small"]]
        if small:
            parts.append(f"Groups with fewer than {self.min_group_size} items are too small to judge: "
                         f"{', '.join(repr(x) for x in small[:10])}.")
        if self.associations is not None:
            sig = [a for a in self.associations if a["significant"] and a["adjusted_effect_size"] > 0]
            if sig:
                a = max(sig, key=lambda a: a["adjusted_effect_size"])
                parts.append(f"Embedding association: texts of group {a['group']!r} sit closer to the {a['class']!r} "
                             f"centroid than other groups' texts with the same labels (effect size "
                             f"{a['adjusted_effect_size']:+.2f}, p = {a['adjusted_p_value']:.3g}); the encoder links this "
                             "group to that class beyond what the labels explain.")
            else:
                parts.append("Embedding association: no group's texts lean toward a class centroid beyond what their "
                             "labels explain.")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data."""
        return {"summary": self.summary, "classes": self.classes, "positive": self.positive, "metric": self.metric_name,
                "overall": self.overall, "groups": self.groups, "worst_group": self.worst_group,
                "significantly_worse": self.significantly_worse, "associations": self.associations,
                "alpha": self.alpha, "ci_level": self.ci_level, "min_group_size": self.min_group_size,
                "seed": self.seed}

    def __str__(self) -> str:
        lines = [self.summary, "",
                 f"{'group':<20} {'n':>6} {'acc':>6} {'F1':>6}  {'CI':<13} {'gap':>6}",
                 f"{'(overall)':<20} {self.overall['n']:>6} {self.overall['accuracy']:>6.3f} {self.overall['f1']:>6.3f}"]
        for g in self.groups:
            f1 = "   n/a" if g["f1"] is None else f"{g['f1']:>6.3f}"
            ci = "" if g["f1_ci"] is None else f"[{g['f1_ci'][0]:.2f}, {g['f1_ci'][1]:.2f}]"
            gap = "" if g["f1_gap"] is None else f"{g['f1_gap']:+.3f}"
            flag = "  <- significantly worse" if g["significantly_worse"] else ("  (small)" if g["small"] else "")
            lines.append(f"{g['group'][:20]:<20} {g['n']:>6} {g['accuracy']:>6.3f} {f1}  {ci:<13} {gap:>6}{flag}")
        if self.associations:
            lines.append("")
            lines.append("embedding association (effect size; label-adjusted effect, p):")
            for a in self.associations:
                star = " *" if a["significant"] else ""
                lines.append(f"  {a['group'][:20]:<20} -> {a['class'][:15]:<15} raw {a['effect_size']:+.2f}; adjusted "
                             f"{a['adjusted_effect_size']:+.2f}, p = {a['adjusted_p_value']:.3g}{star}")
        return "\n".join(lines)


def _associations(E: np.ndarray, yt: np.ndarray, g: np.ndarray, group_names: list[str], classes: list[str],
                  n_permutations: int, alpha: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    En = l2_normalize(E)
    cls = [c for c in classes if (yt == c).any()]
    C = np.stack([En[yt == c].mean(0) for c in cls])
    S = En @ l2_normalize(C).T                                      # (n, classes): cosine to each centroid
    # Residuals within each true class remove what the label mix alone explains.
    R = S.copy()
    blocks = [np.flatnonzero(yt == c) for c in cls]
    for idx in blocks:
        R[idx] -= R[idx].mean(0)
    codes = np.searchsorted(np.asarray(group_names, dtype=object), g)
    G = np.zeros((len(group_names), len(g)))
    G[codes, np.arange(len(g))] = 1.0
    n_g = G.sum(1)[:, None]
    n = len(g)

    def effect(M: np.ndarray, sd: np.ndarray) -> np.ndarray:
        sums = G @ M                                                # (groups, classes)
        mean_in = sums / n_g
        rest = np.maximum(n - n_g, 1)
        mean_out = (M.sum(0)[None, :] - sums) / rest
        return (mean_in - mean_out) / sd[None, :]

    sd_s = np.maximum(S.std(0, ddof=1), 1e-12)
    sd_r = np.maximum(R.std(0, ddof=1), 1e-12)
    obs_raw, obs_adj = effect(S, sd_s), effect(R, sd_r)
    hits_raw = np.zeros_like(obs_raw)
    hits_adj = np.zeros_like(obs_adj)
    for _ in range(n_permutations):
        perm = rng.permutation(n)
        hits_raw += np.abs(effect(S[perm], sd_s)) >= np.abs(obs_raw) - 1e-12
        strat = np.arange(n)
        for idx in blocks:
            strat[idx] = idx[rng.permutation(len(idx))]
        hits_adj += np.abs(effect(R[strat], sd_r)) >= np.abs(obs_adj) - 1e-12
    p_raw = (1 + hits_raw) / (1 + n_permutations)
    p_adj = (1 + hits_adj) / (1 + n_permutations)
    n_tests = obs_adj.size
    mean_in = (G @ S) / n_g
    out = []
    for gi, name in enumerate(group_names):
        for ci, c in enumerate(cls):
            out.append({
                "group": name, "class": c, "n_group": int(n_g[gi, 0]),
                "mean_similarity": fnum(mean_in[gi, ci]),
                "effect_size": fnum(obs_raw[gi, ci]), "p_value": fnum(p_raw[gi, ci]),
                "adjusted_effect_size": fnum(obs_adj[gi, ci]), "adjusted_p_value": fnum(p_adj[gi, ci]),
                "significant": bool(p_adj[gi, ci] < alpha / n_tests),
            })
    return out


def bias_audit(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    groups: Sequence[Any],
    *,
    embeddings: Any = None,
    proba: Any = None,
    classes: Optional[Sequence[str]] = None,
    positive: Optional[str] = None,
    n_boot: int = 1000,
    ci_level: float = 0.95,
    n_permutations: int = 1000,
    max_points: int = 20_000,
    alpha: float = 0.05,
    min_group_size: int = 20,
    seed: int = 0,
) -> BiasReport:
    """Audit a model's predictions (and optionally its embeddings) group by group.

    Args:
        y_true: True labels (compared as strings).
        y_pred: Predicted labels (compared as strings).
        groups: The group of each item (``None``/NaN become ``"(missing)"``).
        embeddings: Optional ``(n, d)`` embeddings of the same items, for the association gaps.
        proba: Optional ``(n, n_classes)`` probabilities (columns in ``classes`` order) for AUPRC.
        classes: All classes (default: the sorted labels seen in ``y_true`` and ``y_pred``).
        positive: Positive class of a binary task (default: resolved like the study does).
        n_boot: Bootstrap replicates of each group's F1 CI.
        ci_level: Level of each group's F1 CI.
        n_permutations: Permutations of each association test.
        max_points: Seeded subsample size for the association tests (their cost is permutations x n).
        alpha: Significance level (Bonferroni-corrected over groups x classes for the associations).
        min_group_size: Smaller groups are reported but marked ``small`` and not named the worst.
        seed: Seeds the bootstrap, the subsample and the permutations.

    Example:
        >>> from adaptlab.monitor import bias_audit
        >>> y_true = ["pos", "neg"] * 40
        >>> y_pred = y_true[:40] + ["neg"] * 40
        >>> report = bias_audit(y_true, y_pred, ["north"] * 40 + ["south"] * 40, n_boot=200, min_group_size=10)
        >>> report.metric_name, report.worst_group, report.significantly_worse
        ("F1 of 'pos'", 'south', ['south'])
    """
    yt = _as_labels("y_true", y_true)
    n = len(yt)
    if n < 2:
        raise ConfigError(f"the bias audit needs at least 2 items; got {n}.")
    yp = _as_labels("y_pred", y_pred, n)
    g = _groups(groups, n)
    n_boot = check_int("n_boot", n_boot, 1)
    ci_level = check_fraction("ci_level", ci_level)
    n_permutations = check_int("n_permutations", n_permutations, 1)
    max_points = check_int("max_points", max_points, 2)
    alpha = check_fraction("alpha", alpha)
    min_group_size = check_int("min_group_size", min_group_size, 1)
    seed = check_int("seed", seed, 0)
    classes = _audit_classes(yt, yp, classes)
    positive = resolve_positive_label(classes, yt.tolist(), positive)
    P = None
    if proba is not None:
        P = as_matrix("proba", proba)
        if P.shape != (n, len(classes)):
            raise ConfigError(f"proba has shape {P.shape}; expected ({n}, {len(classes)}) with columns {classes}.")

    rng = np.random.default_rng(seed)
    overall = {k: fnum(v) for k, v in score(yt, yp, P, classes, positive).items()}
    overall["n"] = n
    overall_rates = _class_rates(yt, yp, classes)
    overall["classes"] = overall_rates

    group_names = sorted(set(g.tolist()))
    rows = [_group_row(yt, yp, P, np.flatnonzero(g == name), name, classes, positive, overall,
                       n_boot=n_boot, ci_level=ci_level, min_group_size=min_group_size, rng=rng)
            for name in group_names]  # in order: each group's bootstrap draws from the one rng
    judged = [r for r in rows if r["f1"] is not None and not r["small"]] or [r for r in rows if r["f1"] is not None]
    worst = min(judged, key=lambda r: (r["f1"], r["group"]))["group"] if judged else None

    associations = None
    if embeddings is not None:
        E = as_matrix("embeddings", embeddings)
        if len(E) != n:
            raise ConfigError(f"embeddings has {len(E)} rows but there are {n} items; pass one embedding per item.")
        if len(group_names) < 2:
            raise ConfigError("the embedding-association test compares groups with each other; only one group occurs.")
        keep = np.arange(n) if n <= max_points else np.sort(rng.choice(n, max_points, replace=False))
        names = sorted(set(g[keep].tolist()))
        associations = _associations(E[keep], yt[keep], g[keep], names, list(classes), n_permutations, alpha, rng)

    return BiasReport(classes=list(classes), positive=positive, overall=overall, groups=rows,
                      associations=associations, worst_group=worst, alpha=alpha, ci_level=ci_level,
                      min_group_size=min_group_size, seed=seed)


def _audit_classes(yt: np.ndarray, yp: np.ndarray, classes: Optional[Sequence[str]]) -> list[str]:
    """The classes to audit: the given ones (holding every label seen), else the labels seen."""
    seen = set(yt.tolist()) | set(yp.tolist())
    if classes is None:
        out = sorted(seen)
    else:
        out = [str(c) for c in classes]
        unknown = sorted(seen - set(out))
        if unknown:
            raise ConfigError.invalid("classes", out, f"a list containing every label seen (missing {unknown[:5]})")
    if len(out) < 2:
        raise ConfigError(f"the bias audit needs at least 2 classes; only {out} occur.")
    return out


def _group_row(yt: np.ndarray, yp: np.ndarray, P: Optional[np.ndarray], idx: np.ndarray, name: str,
               classes: list[str], positive: Optional[str], overall: dict[str, Any], *, n_boot: int,
               ci_level: float, min_group_size: int, rng: np.random.Generator) -> dict[str, Any]:
    """One group's scores, F1 band, per-class rates and its largest gap to the overall figures."""
    overall_rates = overall["classes"]
    t, p = yt[idx], yp[idx]
    labels = sorted(set(t.tolist()) | set(p.tolist())) if positive is None else list(classes)
    undefined = positive is not None and not ((t == positive).any() or (p == positive).any())
    m = score(t, p, None if P is None else P[idx], labels if positive is None else classes, positive)
    f1 = None if undefined else fnum(m["f1"])
    ci = None if undefined else list(_f1_ci(t, p, labels, positive, n_boot, ci_level, rng))
    rates = _class_rates(t, p, classes)
    gaps = [("accuracy", fnum(m["accuracy"]), overall["accuracy"])]
    if f1 is not None:
        gaps.append(("F1" if positive is not None else "macro-F1", f1, overall["f1"]))
    for c in classes:
        for key, label in (("recall", f"recall of {c!r}"), ("predicted_rate", f"predicted rate of {c!r}")):
            if rates[c][key] is not None and overall_rates[c][key] is not None:
                gaps.append((label, rates[c][key], overall_rates[c][key]))
    worst_gap = max(gaps, key=lambda x: abs(x[1] - x[2])) if gaps else None
    return {
        "group": name,
        "n": int(len(idx)),
        "small": bool(len(idx) < min_group_size),
        "accuracy": fnum(m["accuracy"]),
        "accuracy_gap": fnum(m["accuracy"] - overall["accuracy"]),
        "f1": f1,
        "f1_ci": ci,
        "f1_gap": None if f1 is None else fnum(f1 - overall["f1"]),
        "significantly_worse": bool(ci is not None and ci[1] < overall["f1"]),
        "auprc": fnum(m["auprc"]) if "auprc" in m else None,
        "classes": rates,
        "largest_gap": None if worst_gap is None else {
            "metric": worst_gap[0], "group_value": worst_gap[1], "overall_value": worst_gap[2],
            "gap": fnum(worst_gap[1] - worst_gap[2])},
    }


__all__ = ["BiasReport", "MISSING_GROUP", "bias_audit"]
