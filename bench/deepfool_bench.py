"""DeepFool: ours against torchattacks, foolbox and ART, side by side in one process.

Two models, trained here (nothing read from disk): the digits MLP (latent 16,
a few hundred AdamW steps) and the small `cnn` backbone (latent 64) on
CIFAR-shaped synthetic images (3x32x32, a smooth prototype per class plus
noise). Every implementation attacks the same inputs' predicted labels with
the same model, 50 steps, overshoot 0.02 and up to 10 candidates. The peers
get the model as a logits module and bounds that never bind: foolbox the
inputs as they are with bounds 10 ranges away, ART the inputs as they are
with no clip values (with them it scales each step by their span), and
torchattacks, which clips to [0, 1], the inputs mapped affinely into the
middle of that box, u = (x - lo) / span, its perturbations mapped back,
r = span * (u_adv - u) (DeepFool is invariant under this map: it adds no
absolute epsilon; foolbox's +1e-4 on each step is why it gets x itself).
All ratios are ||r|| / ||x||, and the bench checks that no bound was touched.

Each round times ours and every peer once, in a rotating order; a peer's
figure is the median over rounds of its time over ours in the same round
(paired, so load on other cores biases neither). ART is slow, so it attacks
only the first --art-samples inputs and is paired with ours on those inputs.
The floor is the time of the C - 1 input-gradient passes an exact DeepFool
must make over the iterations our attack actually took (the same active sets,
in the same chunks, forward passes not counted), measured in the same rounds.

    .venv/bin/python bench/deepfool_bench.py [--models mlp,cnn] [--rounds 5] [--device cpu]

The peers are the optional `bench` extra (pip install -e '.[bench]'); a
missing one is skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpc_engine.data.datasets import load_data
from lpc_engine.model.network import build_model
from lpc_engine.robustness import deepfool
from lpc_engine.robustness.attack import CPU_CHUNK_ELEMENTS
from lpc_engine.robustness.frozen_bn import with_affine_batch_norms
from lpc_engine.robustness.gradients import boundary_gradients

STEPS, OVERSHOOT, CANDIDATES = 50, 0.02, 10


def train(model: nn.Module, x: Tensor, y: Tensor, steps: int, batch: int, lr: float) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        loss = F.cross_entropy(model(x[idx]).logits, y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


def cifar_like(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """n normalised 3x32x32 images of 10 classes: 8x8 blobs of 4x4 pixels plus noise."""
    protos = torch.rand(10, 3, 8, 8, generator=torch.Generator().manual_seed(123))
    protos = protos.repeat_interleave(4, 2).repeat_interleave(4, 3)
    y = torch.randint(0, 10, (n,), generator=g)
    return (protos[y] - 0.5 + 0.8 * torch.randn(n, 3, 32, 32, generator=g)) / 0.5, y


def make_model(name: str, args: argparse.Namespace) -> tuple[str, nn.Module, Tensor, float]:
    """(description, model, test inputs, test accuracy)."""
    torch.manual_seed(0)
    if name == "mlp":
        data = load_data("digits")
        x_tr, y_tr, x_te, y_te = data.x_train, data.y_train, data.x_test, data.y_test
        model = train(build_model("mlp", "linear", data.input_shape, 10, 16), x_tr, y_tr, 300, 128, 3e-3)
        desc, n = "digits MLP (latent 16, 300 AdamW steps)", args.mlp_samples
    else:
        g = torch.Generator().manual_seed(1)
        (x_tr, y_tr), (x_te, y_te) = cifar_like(4096, g), cifar_like(max(512, args.cnn_samples), g)
        model = train(build_model("cnn", "linear", (3, 32, 32), 10, 64), x_tr, y_tr, 80, 64, 3e-3)
        desc, n = "small CNN on CIFAR-shaped data (latent 64, 80 AdamW steps)", args.cnn_samples
    model = model.to(args.device)
    x_te, y_te = x_te.to(args.device), y_te.to(args.device)
    with torch.no_grad():
        acc = (model(x_te).logits.argmax(1) == y_te).float().mean().item()
    return desc, model, x_te[:n], acc


class Logits(nn.Module):
    """The model as a logits module on u, x = lo + span * u: logits(lo + span * u)."""

    def __init__(self, model: nn.Module, lo: float = 0.0, span: float = 1.0) -> None:
        super().__init__()
        self.model, self.lo, self.span = model, lo, span

    def forward(self, u: Tensor) -> Tensor:
        return self.model(self.lo + self.span * u).logits


# ---- the peers: each maps (model, x, labels, (lo, hi) bounds that never bind) to x_adv ----


def run_torchattacks(model: nn.Module, x: Tensor, labels: Tensor, bounds: tuple[float, float],
                     frozen: bool = False) -> Tensor:
    import torchattacks
    lo, hi = bounds
    net = Logits(model, lo, hi - lo).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    if frozen:  # its backward() otherwise also computes every weight gradient
        for p in params:
            p.requires_grad_(False)
    try:
        u_adv = torchattacks.DeepFool(net, steps=STEPS, overshoot=OVERSHOOT)((x - lo) / (hi - lo), labels)
    finally:
        for p in params:
            p.requires_grad_(True)
    return lo + (hi - lo) * u_adv


def run_foolbox(model: nn.Module, x: Tensor, labels: Tensor, bounds: tuple[float, float]) -> Tensor:
    import foolbox
    fmodel = foolbox.PyTorchModel(Logits(model).eval(), bounds=bounds, device=x.device)
    attack = foolbox.attacks.L2DeepFoolAttack(steps=STEPS, candidates=CANDIDATES, overshoot=OVERSHOOT)
    raw, _, _ = attack(fmodel, x, foolbox.criteria.Misclassification(labels), epsilons=None)
    return raw


def run_art(model: nn.Module, x: Tensor, labels: Tensor, bounds: tuple[float, float]) -> Tensor:
    import logging
    from art.attacks.evasion import DeepFool
    from art.estimators.classification import PyTorchClassifier
    logging.getLogger("art").setLevel(logging.ERROR)  # it warns that there are no clip values
    net = Logits(model).eval()
    with torch.no_grad():
        k = net(x[:1]).shape[1]
    clf = PyTorchClassifier(model=net, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                            nb_classes=k, device_type="gpu" if x.is_cuda else "cpu")
    attack = DeepFool(clf, max_iter=STEPS, epsilon=OVERSHOOT, nb_grads=CANDIDATES,
                      batch_size=x.shape[0], verbose=False)
    return torch.from_numpy(attack.generate(x.cpu().numpy())).to(x.device)


PEERS: dict[str, tuple[str, Callable]] = {
    "torchattacks": ("torchattacks", run_torchattacks),
    "torchattacks-frozen": ("torchattacks", lambda m, x, y, b: run_torchattacks(m, x, y, b, frozen=True)),
    "foolbox": ("foolbox", run_foolbox),
    "art": ("art", run_art),
}


def available(names: list[str]) -> dict[str, str]:
    """name -> version of the peers that import; a line for each that does not."""
    found = {}
    for name in names:
        module = PEERS[name][0]
        try:
            found[name] = importlib.import_module(module).__version__
        except ImportError:
            print(f"  skipped {name}: {module} is not installed (pip install -e '.[bench]')")
    return found


# ---- timing ----


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable, device: str) -> tuple[float, object]:
    sync(device)
    began = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - began, out


def floor_seconds(model: nn.Module, x: Tensor, iterations: Tensor, device: str) -> float:
    """Time of the C - 1 input-gradient passes over the active sets our attack had,
    through the model as ours runs it (batch norms as affine maps, channels-last images)."""
    model = with_affine_batch_norms(model.eval())
    with torch.no_grad():
        cand = model(x).logits.topk(CANDIDATES, dim=1).indices
    rows = x.shape[0] if x.device.type != "cpu" else max(1, CPU_CHUNK_ELEMENTS // x[0].numel())
    if x.device.type == "cpu" and x.dim() == 4:  # as ours runs our model's images
        x = x.contiguous(memory_format=torch.channels_last)
    total = 0.0
    for step in range(int(iterations.max())):
        for idx in (iterations > step).nonzero().squeeze(1).split(rows):
            x_in = x[idx].clone().requires_grad_(True)
            out = model(x_in)
            total += timed(lambda: boundary_gradients(out, x_in, cand[idx], None), device)[0]
    return total


def ratios(x: Tensor, r: Tensor) -> Tensor:
    return r.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)


def bench_model(name: str, args: argparse.Namespace, peers: dict[str, str]) -> None:
    desc, model, x, acc = make_model(name, args)
    lo, hi = float(x.min()), float(x.max())
    bounds = (lo - 10 * (hi - lo), hi + 10 * (hi - lo))  # x sits in the middle 1/21 of the box
    with torch.no_grad():
        labels = model(x).logits.argmax(1)
    n_art = min(args.art_samples, x.shape[0])
    deepfool(model, x[:8])  # warm-up
    times: dict[str, list[float]] = {k: [] for k in ["ours", "ours-art", "floor", *peers]}
    outs: dict[str, Tensor] = {}
    jobs = ["ours", "floor", *peers]
    for r in range(args.rounds):
        for job in jobs[r % len(jobs):] + jobs[:r % len(jobs)]:
            if job == "ours":
                t, res = timed(lambda: deepfool(model, x), args.device)
                outs["ours"], iters = res.ratio, res.iterations
            elif job == "floor":
                t = floor_seconds(model, x, deepfool(model, x).iterations if r == 0 else iters, args.device)
            elif job == "art":
                times["ours-art"].append(timed(lambda: deepfool(model, x[:n_art]), args.device)[0] / n_art)
                t, outs[job] = timed(lambda: PEERS[job][1](model, x[:n_art], labels[:n_art], bounds), args.device)
                t = t * x.shape[0] / n_art
            else:
                t, outs[job] = timed(lambda: PEERS[job][1](model, x, labels, bounds), args.device)
            times[job].append(t / x.shape[0])
    report(desc, x, acc, args, times, outs, bounds, labels, model, peers, iters)


def report(desc, x, acc, args, times, outs, bounds, labels, model, peers, iters) -> None:
    ours_ms = statistics.median(times["ours"]) * 1e3
    print(f"\n{desc}: {x.shape[0]} inputs, test acc {acc:.3f}, {args.device}, "
          f"torch threads {torch.get_num_threads()}, medians of {args.rounds} paired rounds")
    print(f"  {'ours':24s} {ours_ms:9.3f} ms/input                 mean ratio {outs['ours'].mean():.6f}"
          f"   iterations mean {iters.float().mean():.2f}, max {int(iters.max())}")
    fl = [o / f for o, f in zip(times["ours"], times["floor"])]
    print(f"  {'floor (C-1 passes)':24s} {statistics.median(times['floor']) * 1e3:9.3f} ms/input"
          f"   ours/floor {statistics.median(fl):.2f}")
    for name, version in peers.items():
        x_adv = outs[name]
        m = x_adv.shape[0]
        base = times["ours-art"] if name == "art" else times["ours"]
        per = statistics.median([p / o for p, o in zip(times[name], base)])
        ratio = ratios(x[:m], x_adv - x[:m])
        ours = outs["ours"][:m]
        rel = ((ratio - ours).abs() / ours).max().item()
        with torch.no_grad():
            fooled = (model(x_adv).logits.argmax(1) != labels[:m]).float().mean().item()
        bound = bool(((x_adv <= bounds[0]) | (x_adv >= bounds[1])).any())
        sub = f" ({m} inputs)" if m < x.shape[0] else ""
        print(f"  {name + ' ' + version:24s} {statistics.median(times[name]) * 1e3:9.3f} ms/input"
              f"   {per:6.2f}x ours   mean ratio {ratio.mean():.6f} (ours {ours.mean():.6f}){sub}"
              f"   max rel diff {rel:.1e}   fooled {fooled:.3f}{'   BOUND TOUCHED' if bound else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--mlp-samples", type=int, default=300)
    parser.add_argument("--cnn-samples", type=int, default=200)
    parser.add_argument("--art-samples", type=int, default=20, help="inputs ART attacks (it is slow)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("$ python bench/deepfool_bench.py " + " ".join(sys.argv[1:]))
    print(f"torch {torch.__version__}")
    peers = available([p for p in args.peers.split(",") if p])
    for name in args.models.split(","):
        bench_model(name, args, peers)


if __name__ == "__main__":
    main()
