"""Throughput of the batched ensemble relaxation against the one-at-a-time ASE committee path.

Relaxes the same pool of random candidates (default: 256 Si16) with the same ensemble (default:
5 MACE members, trained here from scratch on Stillinger-Weber labels) both ways in one run, and
prints candidates per second for each, their ratio, how often both paths stopped the same way after
the same number of steps, and the largest energy difference between the paths on those candidates.

    python benchmarks/relax_throughput.py                  # CPU, 1 torch thread
    python benchmarks/relax_throughput.py --device cuda    # on a GPU
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=256, help="candidates in the pool")
    ap.add_argument("--members", type=int, default=5, help="ensemble members")
    ap.add_argument("--composition", default="Si16")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--max-steps", type=int, default=100)
    ap.add_argument(
        "--batch-size", type=int, default=64, help="candidates per batch (batched path)"
    )
    ap.add_argument("--epochs", type=int, default=30, help="training epochs per member")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-ase", action="store_true", help="only the batched path")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from crysal_flows.config import OracleConfig, PoolConfig, RelaxationConfig, TrainingConfig
    from crysal_flows.generation.jobs import generate_pool
    from crysal_flows.models.ensemble import Ensemble
    from crysal_flows.oracles import get_oracle
    from crysal_flows.relaxation.relax import relax_ase, relax_batched
    from crysal_flows.schemas import CandidateStatus
    from crysal_flows.training.train import Frame, train_member
    from crysal_flows.utils import structure_to_atoms

    n_train = 60
    t0 = time.perf_counter()
    pool = generate_pool(args.composition, PoolConfig(size=args.n + n_train), args.seed)
    print(
        f"pool: {args.n} + {n_train} candidates of {args.composition} in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    calc = get_oracle(OracleConfig()).calculator()
    rng = np.random.default_rng(args.seed)
    frames = []
    for c in pool.candidates[:n_train]:
        a = structure_to_atoms(c.structure)
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = calc
        f = a.get_forces()
        if np.abs(f).max() < 50:
            frames.append(
                Frame(
                    a.numbers,
                    a.positions,
                    a.cell.array,
                    a.get_potential_energy(),
                    f,
                    a.get_stress(voigt=False),
                )
            )
    t0 = time.perf_counter()
    checkpoints = []
    for m in range(args.members):
        r = train_member(frames, TrainingConfig(epochs=args.epochs), seed=m)
        checkpoints.append((r.checkpoint, r.sha256))
    print(
        f"ensemble: {args.members} members trained on {len(frames)} SW labels in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    ens = Ensemble.from_checkpoints(checkpoints, device=args.device)
    atoms = [structure_to_atoms(c.structure) for c in pool.candidates[n_train:]]
    # no uncertainty stops: both paths run every candidate to convergence or max_steps
    cfg = RelaxationConfig(
        max_steps=args.max_steps,
        uncertainty_floor=1e3,
        uncertainty_ratio=1e3,
        batch_size=args.batch_size,
    )

    def timed(label: str, relax):
        t0 = time.perf_counter()
        results = relax(atoms, ens, cfg, pool.reference_volume)
        seconds = time.perf_counter() - t0
        steps = sum(r.steps for r in results)
        print(
            f"{label}: {seconds:.1f} s, {len(atoms) / seconds:.2f} candidates/s, "
            f"{steps / seconds:.0f} candidate-steps/s"
        )
        return results, seconds

    rb, tb = timed(f"\nbatched (batch {args.batch_size}, {args.device})", relax_batched)
    if args.skip_ase:
        return
    ra, ta = timed(f"ASE one at a time ({args.device})", relax_ase)
    print(f"speed-up batched / ASE: {ta / tb:.1f}x (candidates per second)")

    n_at = len(atoms[0])
    same = [
        (b, a) for b, a in zip(rb, ra, strict=True) if b.status == a.status and b.steps == a.steps
    ]
    both_conv = [
        (b, a)
        for b, a in zip(rb, ra, strict=True)
        if b.status == a.status == CandidateStatus.CONVERGED
    ]
    d_same = [abs(b.energy - a.energy) / n_at * 1000 for b, a in same]
    d_conv = [abs(b.energy - a.energy) / n_at * 1000 for b, a in both_conv]
    print(
        f"same status and steps: {len(same)}/{len(atoms)}; largest |dE| there "
        f"{max(d_same, default=float('nan')):.4f} meV/atom"
    )
    print(
        f"both converged: {len(both_conv)}/{len(atoms)}; |dE| median "
        f"{np.median(d_conv) if d_conv else float('nan'):.4f}, largest "
        f"{max(d_conv, default=float('nan')):.4f} meV/atom; within 1 meV/atom: "
        f"{sum(d <= 1.0 for d in d_conv)}/{len(d_conv)}"
    )
    counts_b = {s.value: sum(r.status == s for r in rb) for s in CandidateStatus}
    counts_a = {s.value: sum(r.status == s for r in ra) for s in CandidateStatus}
    print(
        f"statuses batched { ({k: v for k, v in counts_b.items() if v}) }, "
        f"ASE { ({k: v for k, v in counts_a.items() if v}) }"
    )


if __name__ == "__main__":
    main()
