"""Benchmark: banded-LSH candidate search vs brute force over 64-bit hashes.

For each size N: random uint64 codes with 8 random variant hashes each (standing
in for the hashes of the 7 transformed images), random weak-bit masks, and
N/100 planted near-duplicate pairs at distances 0-10 (variant ``v`` of image
``b`` set to ``codes[a]`` with ``d`` bits flipped, its weak bits marking the
flipped bits plus 2 random ones). Reports wall time, memory, pairs found, recall
of the planted pairs and the growth exponent of time vs N.

    python benchmarks/hash_search_bench.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from pcbforge.curate.candidates import (
    CandidatePairs,
    SearchConfig,
    find_candidate_pairs,
    find_candidate_pairs_exhaustive,
    near_pair_recall_probability,
)

N_VARIANTS = 8
WEAK_BITS = 8  # weak bits per hash, as in pcbforge.curate.hashing
EXTRA_WEAK = 2  # random weak bits added to the flipped ones of a planted pair
_BIT = np.uint64(1) << np.arange(64, dtype=np.uint64)


@dataclass
class Workload:
    codes: np.ndarray
    variants: np.ndarray
    weak: np.ndarray
    planted: np.ndarray  # pair codes i * N + j of the planted pairs
    planted_distance: np.ndarray


def random_masks(rng: np.random.Generator, shape: tuple[int, ...], n_bits: int) -> np.ndarray:
    """Masks of up to ``n_bits`` random bits (collisions make a few of them smaller)."""
    masks = np.zeros(shape, dtype=np.uint64)
    for _ in range(n_bits):  # loop over bits, vectorised over hashes
        masks |= _BIT[rng.integers(0, 64, size=shape)]
    return masks


def make_workload(n: int, seed: int, max_distance: int) -> Workload:
    """Random hashes with ``n // 100`` planted near pairs at distances 0..max_distance."""
    rng = np.random.default_rng(seed)
    variants = rng.integers(0, 2**64, size=(n, N_VARIANTS), dtype=np.uint64, endpoint=False)
    weak = random_masks(rng, (n, N_VARIANTS), WEAK_BITS)

    n_pairs = n // 100
    images = rng.choice(n, size=2 * n_pairs, replace=False)
    a, b = images[:n_pairs], images[n_pairs:]
    distance = np.arange(n_pairs) % (max_distance + 1)
    # Exactly d flipped bits per pair: the d lowest-ranked of a random ranking of the 64 bits.
    ranks = rng.random((n_pairs, 64)).argsort(axis=1).argsort(axis=1)
    flips = np.bitwise_or.reduce(np.where(ranks < distance[:, None], _BIT, np.uint64(0)), axis=1)
    v = rng.integers(0, N_VARIANTS, size=n_pairs)
    variants[b, v] = variants[a, 0] ^ flips
    weak[b, v] = flips | random_masks(rng, (n_pairs,), EXTRA_WEAK)
    planted = np.minimum(a, b).astype(np.int64) * n + np.maximum(a, b)
    return Workload(variants[:, 0].copy(), variants, weak, planted, distance)


def pair_codes(pairs: CandidatePairs, n: int) -> np.ndarray:
    return pairs.i * n + pairs.j


def timed(fn, *args, **kwargs):
    """(result, seconds, peak traced bytes) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-distance", type=int, default=10)
    parser.add_argument(
        "--band-bits",
        type=int,
        default=None,
        help="fixed band width; default SearchConfig.for_size(N) (16 bits up to 65k images)",
    )
    parser.add_argument("--n-bands", type=int, default=16)
    parser.add_argument("--exhaustive-size", type=int, default=10_000)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    print(
        f"numpy {np.__version__}, {N_VARIANTS} variants/image, {WEAK_BITS} weak bits/hash, "
        f"planted pairs: 1% of N at d=0..{args.max_distance}"
    )
    header = (
        f"{'N':>9} {'band':>4} {'build s':>8} {'search s':>9} {'peak MB':>8} "
        f"{'RSS MB':>7} {'pairs':>9} {'recall d<=6':>11} {'recall d<=10':>12}"
    )
    print(header)
    print("-" * len(header))
    times = []
    configs = {}
    for n in sizes:
        start = time.perf_counter()
        work = make_workload(n, args.seed, args.max_distance)
        build = time.perf_counter() - start
        overrides = {"max_distance": args.max_distance, "n_bands": args.n_bands}
        if args.band_bits is not None:
            config = SearchConfig(band_bits=args.band_bits, **overrides)
        else:
            config = SearchConfig.for_size(n, **overrides)
        configs[n] = config
        pairs, seconds, peak = timed(
            find_candidate_pairs, work.codes, work.variants, work.weak, config
        )
        times.append(seconds)
        hit = np.isin(work.planted, pair_codes(pairs, n))
        recall = [hit[work.planted_distance <= d].mean() for d in (6, args.max_distance)]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(
            f"{n:>9,} {config.band_bits:>4} {build:>8.1f} {seconds:>9.2f} {peak / 2**20:>8.0f} "
            f"{rss:>7.0f} {len(pairs):>9,} {recall[0]:>11.4f} {recall[1]:>12.4f}"
        )
        sys.stdout.flush()

    if len(sizes) > 1:
        slope = np.polyfit(np.log(sizes), np.log(times), 1)[0]
        print(f"growth exponent: {slope:.2f} (quadratic would be 2.0)")
        local = np.diff(np.log(times)) / np.diff(np.log(sizes))
        steps = ", ".join(
            f"{a:,}->{b:,}: {e:.2f}" for a, b, e in zip(sizes, sizes[1:], local, strict=False)
        )
        print(f"  between consecutive sizes: {steps}")
    for n, config in configs.items():
        analytic = near_pair_recall_probability(args.max_distance, config)
        print(
            f"analytic recall at d={args.max_distance} without multi-probe, "
            f"band_bits={config.band_bits}, n_bands={config.n_bands}: {analytic:.3f}"
            + ("" if n == sizes[-1] else f"  (N={n:,})")
        )

    n = args.exhaustive_size
    if n:
        work = make_workload(n, args.seed, args.max_distance)
        exhaustive, seconds, peak = timed(
            find_candidate_pairs_exhaustive, work.codes, work.variants, args.max_distance
        )
        lsh = find_candidate_pairs(
            work.codes, work.variants, work.weak, configs.get(n, SearchConfig.for_size(n))
        )
        agree = np.isin(pair_codes(lsh, n), pair_codes(exhaustive, n)).all()
        print(
            f"exhaustive at N={n:,}: {seconds:.2f} s, peak {peak / 2**20:.0f} MB, "
            f"{len(exhaustive):,} pairs; LSH found {len(lsh):,} of them "
            f"({len(lsh) / max(len(exhaustive), 1):.1%}), all LSH pairs in exhaustive: {agree}"
        )
        for big in (10**6,):
            print(
                f"exhaustive extrapolated (quadratic) to N={big:,}: "
                f"{seconds * (big / n) ** 2 / 3600:.1f} h"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
