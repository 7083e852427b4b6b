"""The latent metric suite against the obvious implementation, side by side in one run.

The obvious implementation is what the authors' code does: numpy for Sigma_W,
R, the norms and NC1/NC2 (scipy `pinv`), scikit-learn's BallTree k-NN
(`NearestNeighbors(algorithm="ball_tree")`) for the two Kozachenko-Leonenko
entropies, and one scikit-learn `GaussianMixture` per standardised node.
It is given the same definitions as `lpc_engine.metrics` (true labels, the
R cap, the eps floor) and as many GMM initialisations per node as ours, so
both sides compute the same numbers; the script prints both timings, their
ratio and, for every metric, the largest difference.

Data: N latents (float32) in d dimensions, K classes centred on random
hypercube vertices (+-1 per node, section II.A) plus Gaussian noise:
"spread" (noise 0.5 everywhere, R ~ 3 like LinPen) and "collapsed" (half the
classes at noise 1e-4, two exactly collapsed, the rest 0.5).

    .venv/bin/python bench/metrics_bench.py [--n 50000] [--d 64] [--variants spread,collapsed]
    .venv/bin/python bench/metrics_bench.py --knn-only [--rounds 3]

Run it on an idle machine; the BallTree side takes minutes at N = 50,000.

The k-NN section (first, or alone with --knn-only) times, in paired rounds
(the order rotates; each figure is the median over rounds of its ratio to
ours in the same round), the k-NN of the two entropies (raw and standardised)
against faiss-cpu's IndexFlatL2 and scikit-learn's brute force, and against
the matmul floor measured in the same rounds: the 2 N^2 d flops of all inner
products in float32, (a) as tiles of 128 x 4096 whose output stays in cache
(the GEMM's best rate here) and (b) as (1024, N) blocks written to memory (the
shape the earlier version of ours used), and (c) the half of (a) on and
right of the diagonal: a symmetric ranking needs no more, and ours ranks
spread latents that way. faiss and scikit-learn are the optional `bench`
extra; a missing one is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import time

import numpy as np
import scipy.linalg
import torch
from scipy.special import digamma, gammaln
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from lpc_engine.metrics import EPS_FLOOR_REL, METRIC_NAMES, R_CAP, latent_metrics
from lpc_engine.metrics.binarity import N_INIT, REG_COVAR, fit_node_mixtures, standardize
from lpc_engine.metrics.entropy import knn_sq_distances

K_NN = 20


def make_latents(variant: str, n: int, d: int, k: int, seed: int = 0):
    """z (n, d) float32, y (n,), classifier weights (k, d), predictions (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centres = rng.choice([-1.0, 1.0], size=(k, d))
    noise = np.full(k, 0.5)
    if variant == "collapsed":
        noise[: k // 2] = 1e-4
        noise[k // 2: k // 2 + 2] = 0.0
    z = (centres[y] + noise[y, None] * rng.standard_normal((n, d))).astype(np.float32)
    weight = centres + 0.3 * rng.standard_normal((k, d))
    predictions = (z.astype(np.float64) @ weight.T).argmax(axis=1)
    return z, y, weight, predictions


# ---- the obvious implementation ----


def baseline_collapse(z: np.ndarray, y: np.ndarray, weight: np.ndarray, pred: np.ndarray) -> dict:
    """Table I (but H) and appendix E with numpy/scipy, grouped by true label."""
    classes = np.unique(y)
    means = np.stack([z[y == c].mean(0) for c in classes])
    sigma_w = np.mean([np.cov(z[y == c].T) for c in classes], axis=0)
    dist = np.sqrt(((z[:, None, :] - means[None]) ** 2).sum(-1))
    own = dist[np.arange(len(z)), np.searchsorted(classes, y)]
    other = np.where(classes[None] == y[:, None], np.inf, dist).min(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(own > 0, other / own, np.where(other > 0, R_CAP, 1.0))
    norms = np.linalg.norm(z, axis=1)
    m = means - z.mean(0)
    sigma_b = m.T @ m / len(classes)
    nc1 = np.trace(sigma_w @ scipy.linalg.pinv(sigma_b)) / len(classes)
    mn = np.linalg.norm(m, axis=1)
    cos = (m @ m.T) / np.outer(mn, mn)
    off = ~np.eye(len(classes), dtype=bool)
    w = weight[classes]
    return {
        "sigma_w": sigma_w.mean(), "sigma_w_trace_ratio": np.trace(sigma_w) / np.trace(np.cov(z.T)),
        "separation_ratio": np.minimum(ratio, R_CAP).mean(), "norm_mean": norms.mean(),
        "norm_cov": norms.std() / norms.mean(), "abs_cov": np.abs(z).std() / np.abs(z).mean(),
        "nc1": nc1, "nc1_per_dim": nc1 / z.shape[1], "equinorm": mn.std() / mn.mean(),
        "equiangularity": cos[np.triu(off)].std(),
        "max_angle": np.where(off, np.abs(cos + 1 / (len(classes) - 1)), -np.inf).max(1).mean(),
        "self_duality": np.linalg.norm(w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2,
        "ncc_mismatch": np.mean(classes[dist.argmin(1)] != pred),
        "codebook_distinct": len(np.unique(np.where(means >= 0, 1, -1), axis=0)),
    }


def baseline_entropy(z: np.ndarray, algorithm: str = "ball_tree") -> float:
    """KL entropy / d with scikit-learn k-NN and the same eps floor as ours."""
    n, d = z.shape
    nn = NearestNeighbors(n_neighbors=K_NN + 1, algorithm=algorithm).fit(z)
    eps = nn.kneighbors(z)[0][:, -1]
    eps = np.maximum(eps, EPS_FLOOR_REL * np.sqrt(z.var(axis=0).mean()))
    log_vd = d / 2 * np.log(np.pi) - gammaln(d / 2 + 1)
    return (digamma(n) - digamma(K_NN) + log_vd + d * np.log(eps).mean()) / d


def baseline_gmm(z: np.ndarray, n_init: int) -> tuple[dict, np.ndarray]:
    """One scikit-learn GaussianMixture per standardised node (defaults, n_init starts)."""
    scores, stds, peaks = [], [], []
    for j in range(z.shape[1]):
        x = StandardScaler().fit_transform(z[:, j:j + 1])
        g = GaussianMixture(2, n_init=n_init, random_state=j).fit(x)
        s = np.sqrt(g.covariances_.ravel())
        scores.append(g.score(x))
        stds.append(s.mean())
        peaks.append(abs(g.means_[1, 0] - g.means_[0, 0]) / s.mean())
    scores = np.array(scores)
    return {"gmm_score_mean": scores.mean(), "gmm_score_min": scores.min(), "gmm_std_mean": np.mean(stds),
            "gmm_peak_distance_mean": np.mean(peaks), "gmm_peak_distance_min": np.min(peaks)}, scores


def baseline(z32: np.ndarray, y: np.ndarray, weight: np.ndarray, pred: np.ndarray, n_init: int):
    z = z32.astype(np.float64)
    out = baseline_collapse(z, y, weight, pred)
    out["entropy_per_dim"] = baseline_entropy(z)
    out["entropy_per_dim_standardized"] = baseline_entropy(StandardScaler().fit_transform(z))
    gmm, scores = baseline_gmm(z, n_init)
    return {**out, **gmm}, scores


# ---- the k-NN of the two entropies against faiss, scikit-learn brute force and the matmul floor ----


def entropy_of(sq: np.ndarray, z: np.ndarray) -> float:
    """KL entropy / d from squared (k+1)-th distances (self included), with our eps floor."""
    n, d = z.shape
    eps = np.maximum(np.sqrt(np.maximum(sq, 0)), EPS_FLOOR_REL * np.sqrt(z.var(axis=0).mean()))
    log_vd = d / 2 * np.log(np.pi) - gammaln(d / 2 + 1)
    return (digamma(n) - digamma(K_NN) + log_vd + d * np.log(eps).mean()) / d


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def knn_ours(pair, y, device):
    groups = torch.from_numpy(y).to(device)
    out = [knn_sq_distances(torch.from_numpy(z).to(device), K_NN, groups) for z in pair]
    sync(device)
    return [sq.cpu().numpy() for sq in out]


def knn_faiss(pair, y, device):
    import faiss
    out = []
    for z in pair:
        z32 = np.ascontiguousarray(z, dtype=np.float32)
        index = faiss.IndexFlatL2(z.shape[1])
        index.add(z32)
        out.append(index.search(z32, K_NN + 1)[0][:, -1].astype(np.float64))
    return out


def knn_sklearn(pair, y, device):
    return [NearestNeighbors(n_neighbors=K_NN + 1, algorithm="brute", n_jobs=1).fit(z).kneighbors(z)[0][:, -1] ** 2
            for z in pair]


def tiled_products(pair, device, half: bool) -> None:
    """All N^2 inner products in float32 (or, with `half`, those on and right of
    the diagonal), 128 x 4096 at a time into one cache-resident tile."""
    for z in pair:
        z32 = torch.from_numpy(z).float().to(device)
        zt, n = z32.T.contiguous(), z.shape[0]
        tile = z32.new_empty(128, 4096)
        for r in range(0, n, 128):
            q = z32[r:r + 128]
            for c in range(r if half else 0, n, 4096):
                torch.mm(q, zt[:, c:c + 4096], out=tile[:q.shape[0], :min(4096, n - c)])
    sync(device)


def floor_tiles(pair, y, device):
    tiled_products(pair, device, half=False)


def floor_half(pair, y, device):
    """What a symmetric ranking needs, as ours does on spread latents."""
    tiled_products(pair, device, half=True)


def floor_blocks(pair, y, device):
    """All N^2 inner products in float32, (1024, N) blocks written to one buffer in memory."""
    for z in pair:
        z32 = torch.from_numpy(z).float().to(device)
        zt, n = z32.T.contiguous(), z.shape[0]
        buf = z32.new_empty(1024, n)
        for r in range(0, n, 1024):
            q = z32[r:r + 1024]
            torch.mm(q, zt, out=buf[:q.shape[0]])
    sync(device)


def run_knn(variant: str, args: argparse.Namespace) -> None:
    z32, y, _, _ = make_latents(variant, args.n, args.d, args.classes)
    z = z32.astype(np.float64)
    pair = (z, standardize(torch.from_numpy(z)).numpy())
    jobs = {"ours": knn_ours, "floor, cache tiles": floor_tiles, "floor, memory blocks": floor_blocks,
            "floor, half in tiles": floor_half}
    for name, module, fn in (("faiss IndexFlatL2", "faiss", knn_faiss), ("sklearn brute", "sklearn", knn_sklearn)):
        try:
            importlib.import_module(module)
            jobs[name] = fn
        except ImportError:
            print(f"  skipped {name}: {module} is not installed (pip install -e '.[bench]')")
    times = {k: [] for k in jobs}
    values = {}
    names = list(jobs)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            values[name], t = timed(jobs[name], pair, y, args.device)
            times[name].append(t)
    print(f"\n{variant}: k-NN (k = {K_NN}) of the two entropies, N={args.n} d={args.d}, ours and the "
          f"floors on {args.device}, torch threads {torch.get_num_threads()}, "
          f"medians of {args.rounds} paired rounds")
    exact = [entropy_of(sq, z) for sq, z in zip(values["ours"], pair)]
    for name in names:
        t = statistics.median(times[name])
        per = statistics.median([a / b for a, b in zip(times["ours"], times[name])])
        line = f"  {name:22s} {t:8.2f} s   ours / this {per:5.2f}"
        if values.get(name) is not None:
            got = [entropy_of(sq, z) for sq, z in zip(values[name], pair)]
            err = max(abs(a - b) for a, b in zip(got, exact))
            line += f"   H/d raw {got[0]:.6f}, standardised {got[1]:.6f}   |diff to ours| {err:.1e}"
        print(line)


# ---- reporting ----


def timed(fn, *args, **kwargs):
    began = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - began


def warm_start_check(z: np.ndarray, nodes: np.ndarray) -> float:
    """Largest |score change| when scikit-learn's EM starts from our fit of `nodes`:
    ~0 means our optimum is a genuine EM fixed point of scikit-learn's model too."""
    fit = fit_node_mixtures(torch.from_numpy(z))
    worst = 0.0
    for j in nodes:
        x = StandardScaler().fit_transform(z[:, j:j + 1].astype(np.float64))
        var = fit.stds[j].numpy() ** 2
        g = GaussianMixture(2, weights_init=fit.weights[j].numpy(), means_init=fit.means[j].numpy()[:, None],
                            precisions_init=(1 / var)[:, None, None], reg_covar=REG_COVAR).fit(x)
        worst = max(worst, abs(g.score(x) - fit.score[j].item()))
    return worst


def report(ours: dict, base: dict) -> None:
    print(f"  {'metric':30s} {'ours':>14s} {'obvious':>14s} {'|diff|':>10s} {'rel':>9s}")
    for name in METRIC_NAMES:
        a, b = ours[name], float(base[name])
        diff = abs(a - b)
        rel = diff / abs(b) if b else (0.0 if diff == 0 else math.inf)
        print(f"  {name:30s} {a:14.7g} {b:14.7g} {diff:10.2e} {rel:9.1e}")


def run_variant(variant: str, args: argparse.Namespace) -> None:
    z, y, weight, pred = make_latents(variant, args.n, args.d, args.classes)
    ours, t_ours = timed(latent_metrics, z, y, classifier_weight=weight, predictions=pred, k=K_NN)
    (base, sk_scores), t_base = timed(baseline, z, y, weight, pred, N_INIT)
    print(f"\n{variant}: N={args.n} d={args.d} K={args.classes}")
    print(f"  ours (lpc_engine.metrics.latent_metrics): {t_ours:8.2f} s")
    print(f"  obvious (numpy + BallTree + sklearn GMM n_init={N_INIT}): {t_base:8.2f} s")
    print(f"  speed ratio: {t_base / t_ours:.1f}x")
    report(ours, base)
    gap = fit_node_mixtures(torch.from_numpy(z)).score.numpy() - sk_scores
    better = np.flatnonzero(gap > 1e-3)
    print(f"  per-node GMM score, ours - sklearn best of {N_INIT}: "
          f"min {gap.min():+.2e}, max {gap.max():+.2e}; "
          f"{len(better)} nodes higher by > 1e-3, {(gap < -1e-3).sum()} lower by > 1e-3")
    if len(better):
        print(f"  sklearn EM started from our fit of those nodes moves the score by at most "
              f"{warm_start_check(z, better):.1e} (a genuine optimum it did not reach)")
    if args.context:
        zz = z.astype(np.float64)
        _, t_brute = timed(baseline_entropy, zz, "brute")
        (_, sk1), t_gmm1 = timed(baseline_gmm, zz, 1)
        one = fit_node_mixtures(torch.from_numpy(z), n_init=1, tol=1e-3).score.numpy() - sk1
        print(f"  context: sklearn brute-force k-NN, one entropy: {t_brute:.2f} s; "
              f"sklearn GMM n_init=1 (the authors' setting), all nodes: {t_gmm1:.2f} s")
        print(f"  the authors' setting on both sides (one k-means start, tol 1e-3): per-node score "
              f"ours - sklearn in [{one.min():+.1e}, {one.max():+.1e}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--variants", default="spread,collapsed")
    parser.add_argument("--no-context", dest="context", action="store_false",
                        help="skip the extra timings of sklearn brute k-NN and GMM n_init=1")
    parser.add_argument("--knn-only", action="store_true", help="only the k-NN section")
    parser.add_argument("--no-knn", dest="knn", action="store_false", help="skip the k-NN section")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds of the k-NN section")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="where the k-NN section runs ours and the floors")
    args = parser.parse_args()
    print("$ python bench/metrics_bench.py " + " ".join(sys.argv[1:]))
    torch.set_num_threads(args.threads)
    try:
        import faiss
        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    latent_metrics(*make_latents("spread", 500, args.d, args.classes)[:2])  # warm-up
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for variant in args.variants.split(","):
        if args.knn:
            run_knn(variant, args)
        if not args.knn_only:
            run_variant(variant, args)


if __name__ == "__main__":
    main()
