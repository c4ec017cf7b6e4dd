"""How long a running study job still needs: the web app's job page shows it beside "N of M runs finished".

The runs left are timed from what is known, best first: the mean time of the rung's finished runs on this
machine, else the study's cost estimate of the rung (a study with a time budget is costed before it starts;
a study without one starts from what earlier runs of its rungs cost in the run store, :func:`stored_estimates`;
the job keeps them in ``spec["cost_estimates"]``). A running cell counts what is left of its time. With a
time budget, the study stops by then whatever the runs would take, so the estimate never exceeds it. A rung
neither timed nor costed is named: its first run sets the pace.
"""
from __future__ import annotations

import time
from typing import Any, Optional

__all__ = ["job_eta", "estimates_for_job", "stored_estimates"]

STORED = "earlier runs in the run store"


def estimates_for_job(cost_estimates: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A study's ``cost_estimates`` as the job keeps them (JSON): seconds of a rung's first and next full run.

    Example:
        >>> estimates_for_job({"probe": (2.0, 0.5)})
        {'probe': {'first': 2.5, 'next': 0.5}}
    """
    out = {}
    for rung, cost in (cost_estimates or {}).items():
        try:
            if hasattr(cost, "estimate"):
                first, nxt = cost.estimate(1.0, first=True), cost.estimate(1.0, first=False)
            else:
                one, per = cost
                first, nxt = one + per, per
            out[str(rung)] = {"first": round(float(first), 3), "next": round(float(nxt), 3)}
        except (TypeError, ValueError):
            continue  # an estimate this cannot read is left out, not guessed
    return out


def stored_estimates(store: Any, rungs: Any, *, n_labeled: int, test_size: float = 0.2) -> dict[str, dict[str, Any]]:
    """Seconds a run of each of ``rungs`` took in the run store before, as :func:`job_eta` reads them: the ETA of
    a study without a time budget (nothing is calibrated for it) before its own runs are timed.

    Rungs whose time scales with the data (tfidf, probe, the refit's head) are scaled to ``n_labeled`` texts
    (:func:`adaptlab.decide.plan.measured_costs`); a network rung's runs are taken as they were (a training
    budget is steps or time, not texts). A rung never run before is left out: its first run sets the pace.

    Example:
        >>> import tempfile, os
        >>> from adaptlab.store import RunStore
        >>> stored_estimates(RunStore(os.path.join(tempfile.mkdtemp(), "runs.sqlite")), ["tfidf"], n_labeled=100)
        {}
    """
    from adaptlab.decide.plan import measured_costs

    wanted = [str(r) for r in rungs]
    out: dict[str, dict[str, Any]] = {}
    for rung, m in measured_costs(store, n_labeled=n_labeled, test_size=test_size).items():
        if rung in wanted and isinstance(m.per_seed, (int, float)) and m.per_seed > 0:
            out[rung] = {"first": round(float(m.per_seed), 3), "next": round(float(m.per_seed), 3), "source": STORED}
    runs: dict[str, list[float]] = {}
    missing = set(wanted) - set(out)
    for s in store.list_studies() if missing else ():
        for res in store.study_results(s["study_id"]):
            secs = ((res.get("metrics") or {}).get("cost") or {}).get("total_seconds")
            if res["rung"] in missing and isinstance(secs, (int, float)) and secs > 0:
                runs.setdefault(res["rung"], []).append(float(secs))
    for rung, secs in runs.items():
        mean = round(sum(secs) / len(secs), 3)
        out[rung] = {"first": mean, "next": mean, "source": STORED}
    return out


def _fmt(seconds: float) -> str:
    from adaptlab.config import format_duration

    return format_duration(max(seconds, 0.0), (0, 1, 1))


def _runs_left(cells: list[dict[str, Any]], estimates: dict[str, Any], now: float) -> tuple[float, list[str], set]:
    """Seconds of the runs not finished, the rungs that cannot be timed yet, and the sources used."""
    measured: dict[str, list[float]] = {}
    for c in cells:
        if c.get("state") == "done" and isinstance(c.get("seconds"), (int, float)):
            measured.setdefault(c["rung"], []).append(float(c["seconds"]))
    left, unknown, used, seen = 0.0, [], set(), set(measured)
    for c in sorted(cells, key=lambda c: c.get("state") != "running"):  # running cells are each rung's first
        if c.get("state") not in ("pending", "running"):
            continue
        rung = c.get("rung")
        if rung in measured:
            per = sum(measured[rung]) / len(measured[rung])
            used.add("the finished runs' times")
        elif rung in estimates:
            per = estimates[rung]["next" if rung in seen else "first"]
            used.add(estimates[rung].get("source") or "the study's cost estimates")
        else:
            if rung not in unknown:
                unknown.append(rung)
            continue
        seen.add(rung)
        if c.get("state") == "running" and isinstance(c.get("started"), (int, float)):
            per = max(per - (now - c["started"]), 0.0)
        left += per
    return left, unknown, used


def job_eta(job: dict[str, Any], now: Optional[float] = None) -> Optional[dict[str, Any]]:
    """The time a running study job still needs: ``{"seconds", "text"}`` (``seconds`` None while unknown),
    or None for a job that is not a running study.

    Example:
        >>> job = {"status": "running", "started": 0.0, "spec": {}, "cells": {
        ...     "tfidf|0": {"rung": "tfidf", "state": "done", "seconds": 2.0},
        ...     "tfidf|1": {"rung": "tfidf", "state": "pending"},
        ...     "lora|0": {"rung": "lora", "state": "pending"}}}
        >>> job_eta(job, now=10.0)["text"]
        "about 2 s left, and lora not yet timed (from the finished runs' times; a rung's first run sets its pace)"
    """
    if not isinstance(job, dict) or job.get("status") != "running" or not job.get("cells"):
        return None
    now = time.time() if now is None else now
    spec = job.get("spec") or {}
    left, unknown, used = _runs_left(list(job["cells"].values()), spec.get("cost_estimates") or {}, now)
    budget_left = _budget_left(spec.get("time_budget"), job.get("started"), now)
    basis = " and ".join(sorted(used))
    if unknown:
        names = ", ".join(unknown)
        if not used:
            text = (f"time left: known once the first run of {names} finishes"
                    + (f"; at most {_fmt(budget_left)} (the time budget)" if budget_left is not None else ""))
            return {"seconds": budget_left, "text": text}
        text = f"about {_fmt(left)} left, and {names} not yet timed (from {basis}; a rung's first run sets its pace)"
        return {"seconds": None, "text": text}
    if budget_left is not None and budget_left < left:
        return {"seconds": budget_left, "text": f"at most {_fmt(budget_left)} left: the time budget stops it "
                                                f"(the runs not yet done would take ~{_fmt(left)})"}
    return {"seconds": left, "text": f"about {_fmt(left)} left (from {basis})"}


def _budget_left(time_budget: Any, started: Any, now: float) -> Optional[float]:
    """What is left of a time budget since the job started (None without one, or if it cannot be read)."""
    if not time_budget or not isinstance(started, (int, float)):
        return None
    from adaptlab.config import parse_duration
    from adaptlab.errors import AdaptlabError

    try:
        return max(parse_duration(time_budget, "time_budget") - (now - started), 0.0)
    except (AdaptlabError, TypeError, ValueError):
        return None
