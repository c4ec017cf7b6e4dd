"""Benchmark: how well adaptlab's label check finds flipped labels, next to cleanlab itself and a naive baseline.

For each corpus (BBC News subsets; crowd-labeled tweets, a noisier real corpus), flip rate (10%, 30%)
and seed, a known share of labels is moved to another class drawn at random. One set of out-of-fold
probabilities (5-fold TF-IDF + logistic regression, `adaptlab.data.out_of_fold_probabilities`) is
computed per condition, and the same probabilities feed three rankings:

* **adaptlab** — `adaptlab.data.check_labels(ds, probabilities=P)`: the rows it flags, in its order;
* **cleanlab** — `cleanlab.filter.find_label_issues(labels, P, return_indices_ranked_by="self_confidence")`
  called directly (adaptlab wraps it, so equal numbers are expected);
* **model disagrees** — every row whose most probable class is not its label, lowest probability of the
  given label first.

Scores at k = number of flipped rows: of the first min(k, flagged) rows of each ranking, the share that
was flipped (precision) and the share of flipped rows found (recall). k is unknown in practice: the
columns "as flagged" score each method's whole list (confident learning decides how many rows to
flag from its estimate of the noise; the baseline flags every disagreement). The noise rate adaptlab estimates
is printed beside the true flip rate; the corpora have label noise of their own (the tweets' crowd labels
especially), which lowers every precision alike.

    PYTHONPATH=src .venv/bin/python bench/label_noise.py            # ~1-2 min on 2 CPU cores
    PYTHONPATH=src .venv/bin/python bench/label_noise.py --n 500 --seeds 1

Writes bench/results/label_noise.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from adaptlab.data import TextDataset, check_labels, out_of_fold_probabilities
from adaptlab.data.bundled import load_bbc_news, load_tweet_sentiment, stratified_subsample

RESULTS = Path(__file__).parent / "results" / "label_noise.json"


def flip(ds: TextDataset, rate: float, seed: int) -> tuple[TextDataset, set[int]]:
    """``ds`` with round(rate * n) labels moved to another class, uniformly; the positions that moved."""
    rng = np.random.default_rng(seed)
    classes = ds.classes
    k = int(round(rate * len(ds)))
    where = set(rng.choice(len(ds), k, replace=False).tolist())
    labels = [str(rng.choice([c for c in classes if c != lab])) if i in where else lab
              for i, lab in enumerate(ds.labels)]
    return TextDataset(texts=ds.texts, labels=labels, ids=ds.ids, source=ds.source), where


def at_k(ranked: list[int], flipped: set[int]) -> dict[str, float]:
    k = len(flipped)
    top = ranked[:k]
    hits, all_hits = len(set(top) & flipped), len(set(ranked) & flipped)
    return {"flagged": len(ranked), "precision": hits / len(top) if top else 0.0, "recall": hits / k,
            "precision_flagged": all_hits / len(ranked) if ranked else 0.0, "recall_flagged": all_hits / k}


def run_one(ds: TextDataset, rate: float, seed: int) -> dict:
    from cleanlab.filter import find_label_issues

    noisy, flipped = flip(ds, rate, seed)
    t0 = time.perf_counter()
    proba, classes, _, _ = out_of_fold_probabilities(noisy, seed=seed)
    t_proba = time.perf_counter() - t0
    y = np.asarray([classes.index(c) for c in noisy.labels])
    t0 = time.perf_counter()
    ours = check_labels(noisy, probabilities=proba)
    t_check = time.perf_counter() - t0
    theirs = find_label_issues(y, proba, return_indices_ranked_by="self_confidence", n_jobs=1).tolist()
    given = proba[np.arange(len(y)), y]
    disagree = [int(i) for i in np.argsort(given, kind="stable") if proba[i].argmax() != y[i]]
    return {"rate": rate, "seed": seed, "n": len(ds), "n_flipped": len(flipped),
            "estimated_noise_rate": ours.noise_rate, "seconds_probabilities": t_proba, "seconds_check": t_check,
            "adaptlab": at_k(ours.flagged_indices, flipped), "cleanlab": at_k(theirs, flipped),
            "model_disagrees": at_k(disagree, flipped), "identical_to_cleanlab": ours.flagged_indices == theirs}


def corpora(n: int) -> list[tuple[str, TextDataset]]:
    bbc = load_bbc_news()
    bbc = bbc.subset(stratified_subsample(bbc.labels, n, seed=0))
    tweets = load_tweet_sentiment(max_items=n, seed=0)
    return [(f"BBC News ({n})", bbc), (f"tweets ({n})", tweets)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="texts per corpus (stratified subsample)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rates", default="0.1,0.3")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rows = []
    for name, ds in corpora(args.n):
        for rate in rates:
            for seed in range(args.seeds):
                r = {"corpus": name, **run_one(ds, rate, seed)}
                rows.append(r)
                print(f"  {name} flip {rate:.0%} seed {seed}: adaptlab P {r['adaptlab']['precision']:.3f} "
                      f"R {r['adaptlab']['recall']:.3f}  ({r['seconds_probabilities']:.1f} s)", flush=True)
    summary = []
    print("\nprecision / recall at k = number flipped; then each method's whole list (n flagged: P / R)")
    print(f"{'corpus':<18}{'flip':>6}  {'est. noise':>10}  {'adaptlab @k':>13}  {'cleanlab @k':>13}  "
          f"{'disagrees @k':>13}  {'adaptlab as flagged':>22}  {'disagrees as flagged':>22}  {'same':>5}  {'s/run':>5}")
    for name in dict.fromkeys(r["corpus"] for r in rows):
        for rate in rates:
            sel = [r for r in rows if r["corpus"] == name and r["rate"] == rate]
            mean = lambda f: float(np.mean([f(r) for r in sel]))  # noqa: E731
            s = {"corpus": name, "rate": rate, "seeds": len(sel),
                 "estimated_noise_rate": mean(lambda r: r["estimated_noise_rate"]),
                 "seconds": mean(lambda r: r["seconds_probabilities"] + r["seconds_check"]),
                 "identical_to_cleanlab": all(r["identical_to_cleanlab"] for r in sel)}
            for m in ("adaptlab", "cleanlab", "model_disagrees"):
                s[m] = {k: mean(lambda r, m=m, k=k: r[m][k])
                        for k in ("precision", "recall", "flagged", "precision_flagged", "recall_flagged")}
            summary.append(s)
            pr = lambda m: f"{s[m]['precision']:.2f} / {s[m]['recall']:.2f}"  # noqa: E731
            fl = lambda m: (f"{s[m]['flagged']:.0f}: "  # noqa: E731
                            f"{s[m]['precision_flagged']:.2f} / {s[m]['recall_flagged']:.2f}")
            print(f"{name:<18}{rate:>6.0%}  {s['estimated_noise_rate']:>10.1%}  {pr('adaptlab'):>13}  "
                  f"{pr('cleanlab'):>13}  {pr('model_disagrees'):>13}  {fl('adaptlab'):>22}  "
                  f"{fl('model_disagrees'):>22}  {'yes' if s['identical_to_cleanlab'] else 'NO':>5}  "
                  f"{s['seconds']:>5.1f}")
    import cleanlab
    import sklearn

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "precision/recall at k = number of flipped labels; mean over seeds",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cleanlab": cleanlab.__version__, "scikit-learn": sklearn.__version__},
        "args": {"n": args.n, "seeds": args.seeds, "rates": rates}, "summary": summary, "runs": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
