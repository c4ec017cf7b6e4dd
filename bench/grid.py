"""Benchmark: the study grid on a local Ray instance vs in-process, and Ray's overhead per job.

Same study (rungs x seeds on real BBC News texts), same encoder, same machine, one process: first
in-process, then with the Ray executor on a local instance of ``--ray-cpus`` CPUs. Encoding is taken
out of the comparison: the embedding cache is filled once and copied into every run's home, so both
executors run exactly the same (rung, seed) jobs from a warm cache and every result is trained (fresh
run stores). Two grids: ``small`` jobs (TF-IDF on a few hundred texts, ~0.1-0.5 s each: overhead
dominates) and ``bbc`` jobs (TF-IDF + probe on all 2,225 texts, seconds each).

    PYTHONPATH=src HF_HUB_OFFLINE=1 .venv/bin/python bench/grid.py --seeds 6 --ray-cpus 2

Printed per grid: wall time of the jobs in-process (serial) and on Ray (parallel over ``--ray-cpus``;
twice: first with fresh workers that still import adaptlab and unpack the study's inputs, then with
warm workers), the speed-up, and the overhead per job: Ray's wall time minus the ideal (in-process
time / CPUs), spread over the jobs. ``ray.init`` and no-op task latency are reported separately.
Ray workers run each job on one thread (Ray sets OMP_NUM_THREADS to the job's CPUs), in-process jobs on
torch's default threads: on a busy machine fewer threads per job can beat the "ideal" 2x.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (on {os.cpu_count()} CPUs)"


def timed_executor(executor):
    """Wrap ``executor.run`` to record how long the jobs took (dispatch to last result)."""
    original = executor.run
    record = {}

    def run(*a, **k):
        t0 = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            record["seconds"] = time.perf_counter() - t0
            record["jobs"] = len(a[0]) if a else len(k.get("jobs", []))

    executor.run = run
    return record


def run_grid(name: str, data, rungs: list[str], seeds: int, encoder, warm_cache: Path | None, ray_cpus: int,
             tmp: Path) -> None:
    from adaptlab.config import ExecutorConfig, StudyConfig
    from adaptlab.evaluate import Study
    from adaptlab.evaluate.executor import InProcessExecutor, RayExecutor

    cfg = StudyConfig(rungs=rungs, seeds=seeds, n_boot=200)
    times = {}
    results = {}
    # Ray twice: the first run pays for the workers importing adaptlab/torch and unpacking the inputs.
    for kind in ("inprocess", "ray", "ray (warm workers)"):
        home = tmp / f"{name}-{kind.split()[0]}-{len(times)}"
        if warm_cache is not None:
            shutil.copytree(warm_cache, home / "cache")
        ex = InProcessExecutor() if kind == "inprocess" else RayExecutor(ExecutorConfig(kind="ray"))
        rec = timed_executor(ex)
        t0 = time.perf_counter()
        res = Study(cfg, home=home, encoder=encoder, executor=ex).run(data)
        times[kind] = (rec["seconds"], time.perf_counter() - t0, rec["jobs"])
        results[kind] = [r["f1_by_seed"] for r in res.rows]
    t_in, w_in, n = times["inprocess"]
    ideal = t_in / ray_cpus
    print(f"\n[{name}] {len(data)} texts, rungs {','.join(rungs)} x {seeds} seeds = {n} jobs")
    print(f"  in-process jobs : {t_in:7.2f} s  ({t_in / n:.2f} s/job; study wall {w_in:.2f} s)")
    for kind in ("ray", "ray (warm workers)"):
        t_ray, w_ray, _ = times[kind]
        print(f"  {kind:<19}: {t_ray:7.2f} s  ({ray_cpus} CPUs; study wall {w_ray:.2f} s); "
              f"speed-up {t_in / t_ray:.2f}x (ideal {ray_cpus}x); overhead {(t_ray - ideal) * ray_cpus / n:+.3f} "
              f"CPU-s/job ({(t_ray - ideal) / n * 1000:+.0f} ms wall/job)")
    print(f"  identical F1 by seed (all runs)  : {results['inprocess'] == results['ray'] == results['ray (warm workers)']}")
    print(f"  load now                         : {_load()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--small-n", type=int, default=400, help="texts in the small-jobs grid")
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--skip-bbc", action="store_true", help="only the small-jobs grid")
    parser.add_argument("--warm-cache", type=Path, default=None,
                        help="an embeddings.sqlite that already holds the BBC vectors (copied, never changed)")
    args = parser.parse_args(argv)

    import ray
    import torch

    from adaptlab.data.bundled import load_bbc_news
    from adaptlab.encoders import EmbeddingCache, embed, load_encoder

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}, "
          f"torch threads {torch.get_num_threads()}; load {_load()}")
    bbc = load_bbc_news()
    t0 = time.perf_counter()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"ray.init (local, {args.ray_cpus} CPUs): {time.perf_counter() - t0:.2f} s")

    @ray.remote
    def noop(x):
        return x

    t0 = time.perf_counter()
    ray.get([noop.remote(i) for i in range(args.ray_cpus)])
    print(f"first tasks (worker start-up): {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    ray.get([noop.remote(i) for i in range(200)])
    print(f"200 no-op tasks on warm workers: {(time.perf_counter() - t0) / 200 * 1000:.1f} ms/task")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        step = max(1, len(bbc) // args.small_n)
        small = bbc.subset(list(range(0, len(bbc), step))[: args.small_n])
        run_grid("small", small, ["tfidf"], args.seeds, None, None, args.ray_cpus, tmp)
        if not args.skip_bbc:
            enc = load_encoder(device="cpu")
            warm = tmp / "warm-cache"
            if args.warm_cache is not None:
                warm.mkdir()
                shutil.copyfile(args.warm_cache, warm / "embeddings.sqlite")
            t0 = time.perf_counter()
            embed(enc, bbc.texts, cache=EmbeddingCache(warm / "embeddings.sqlite"))
            print(f"\n(embedding {len(bbc)} texts once for the bbc grid: {time.perf_counter() - t0:.1f} s, not counted)")
            run_grid("bbc", bbc, ["tfidf", "probe"], args.seeds, enc, warm, args.ray_cpus, tmp)
    ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
