"""Throughput of the packaged priors (CHGNet, SevenNet-0) in batches against one at a time.

Evaluates the same random candidates of a composition (default: 48 Si16 from the pool generator)
with each prior's own ASE calculator, one structure per call, and with the prior as the search
uses it (``Prior.predict``: ``BATCH_SIZE`` structures per model call), each timed ``--repeat``
times in turn, the best time kept (a relaxation makes hundreds of such calls; the first ones are
slower). Prints structures per second both ways, their ratio, and the largest energy and force
differences between the two, then the batched rate at other batch sizes.

    python benchmarks/prior_throughput.py                         # Si16, 48 structures, 1 thread
    python benchmarks/prior_throughput.py --composition Al4O6 --n 96
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--composition", default="Si16")
    ap.add_argument("--n", type=int, default=48, help="structures")
    ap.add_argument("--priors", nargs="+", default=["chgnet", "sevennet"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--sizes", type=int, nargs="*", default=[4, 32, 64], help="other batch sizes")
    ap.add_argument("--repeat", type=int, default=3, help="timings of each, best kept")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from crysal_flows.config import PoolConfig, PriorConfig
    from crysal_flows.generation.jobs import generate_pool
    from crysal_flows.models import prior as prior_module
    from crysal_flows.utils import structure_to_atoms

    pool = generate_pool(args.composition, PoolConfig(size=args.n), args.seed)
    atoms = [structure_to_atoms(c.structure) for c in pool.candidates]
    print(f"{len(atoms)} candidates of {args.composition}, {args.threads} torch thread(s)")
    print(
        f"{'prior':9} {'one by one /s':>13} {'batched /s':>11} {'ratio':>6} "
        f"{'dE max eV':>10} {'dF max eV/A':>11}"
    )
    for kind in args.priors:
        prior = prior_module.get_prior(PriorConfig(kind=kind))
        default = prior_module.BATCH_SIZE

        times = {"one": [], **{size: [] for size in [default, *args.sizes]}}
        for _ in range(args.repeat):  # in turn, so that a busy moment hits all alike
            t0 = time.perf_counter()
            # the calculator's own path, one structure per call
            single = prior_module.CalculatorPrior.predict(prior, atoms)
            times["one"].append(time.perf_counter() - t0)
            for size in [default, *args.sizes]:
                prior_module.BATCH_SIZE = size
                t0 = time.perf_counter()
                pred = prior.predict(atoms)
                times[size].append(time.perf_counter() - t0)
                if size == default:
                    batched = pred
        prior_module.BATCH_SIZE = default
        t_one, t_batch = min(times["one"]), min(times[default])
        de = np.abs(single.energy - batched.energy).max()
        df = np.abs(single.forces - batched.forces).max()
        n = len(atoms)
        print(
            f"{kind:9} {n / t_one:13.1f} {n / t_batch:11.1f} {t_one / t_batch:6.2f} "
            f"{de:10.2e} {df:11.2e}   (batch {default})"
        )
        for size in args.sizes:
            dt = min(times[size])
            print(f"{'':9} batch {size:3}: {n / dt:6.1f} /s, {t_one / dt:5.2f} x one by one")


if __name__ == "__main__":
    main()
