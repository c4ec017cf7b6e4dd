"""Which texts to label next: label acquisition for a shipped model (or, with no model, a cold start).

Beside :mod:`adaptlab.monitor`: both read a shipped model and new texts, and both feed ``retrain``.

* :func:`suggest_for_model` — from a model folder and a pool of unlabeled texts, ``n`` texts to label,
  each with the model's guess, its confidence and the reason it was picked.
* :func:`suggest_for_study` — the same from a stored study's decided rung (trained once, kept under the home).
* :func:`cold_start` — no model yet: the most representative texts (k-medoids, frozen encoder).
* :func:`suggest` / :func:`select` — the same on arrays (probabilities, embeddings).
* :mod:`adaptlab.acquire.calibration` — temperature scaling of the probabilities before they rank (Guo et al. 2017).
* :mod:`adaptlab.acquire.strategies` — uncertainty (Settles 2009), core-set / k-center (Sener &
  Savarese 2018), k-means++ (Arthur & Vassilvitskii 2007), k-medoids (Park & Jun 2009), nearest to a slice.

Example:
    >>> from adaptlab.acquire import suggest_for_model
    >>> from adaptlab.data import load_dataset
    >>> s = suggest_for_model("models/news", load_dataset("inbox.csv", require_labels=False), 50)  # doctest: +SKIP
    >>> print(s.summary())                                                                         # doctest: +SKIP
    50 of 1200 pool texts suggested (5 by slice, 45 by uncertainty); never offered: 3 ...
    >>> s.write("to-label.csv")                                                                    # doctest: +SKIP
"""
from adaptlab.acquire.shipped import cold_start, suggest_for_model, worst_slice
from adaptlab.acquire.study import suggest_for_study
from adaptlab.acquire.suggest import COLUMNS, DEFAULT_MIX, STRATEGIES, Suggestions, offerable, select, suggest

__all__ = ["COLUMNS", "DEFAULT_MIX", "STRATEGIES", "Suggestions", "cold_start", "offerable", "select", "suggest",
           "suggest_for_model", "suggest_for_study", "worst_slice"]
