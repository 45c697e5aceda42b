"""Make the golden vectors in tests/data/ from the PyTorch side (run once, by hand).

    python tests/data/make_golden.py        # needs torch and fastfeedforward==0.2.1

Every number in the files comes from torch in float64:

- ``leaf_*.npz``: ``fastfeedforward.FFF`` 0.2.1 itself (its own code, with ``torch.float`` rebound to
  float64, see tests/test_crosscheck_torch.py): soft forward, L_harden, autograd gradients of
  ``sum(y_soft * dL_dy) + hardening * L_harden``, its eval output (``y_package_eval``, which omits
  ``b2s``), and its hard-decision training forward (``y_hard``, which keeps ``b2s``: SPEC's hard forward;
  the inputs have no ties, where its rounding would differ). ``leaf`` comes from a torch descent
  (a >= 0 goes right) and is checked against both. At depth 0 the package's eval crashes, so that file
  has no ``y_package_eval``; its ``y_hard`` is the soft forward (one leaf, no decision), its hardening
  term is left out (the package's mean over zero nodes is NaN; SPEC's L_harden is 0 there).
- ``neuron_tree_*.npz``: the torch rendering of SPEC §2 in tests/test_crosscheck_torch.py (UltraFastBERT's
  masked training forward), its output ``y``, visited rows ``rows`` (n, P, depth+1) and autograd gradients
  of ``sum(y * dL_dy)``.

Arrays are float64 (int64 for indices and sizes, a 0-d string for names), saved with ``np.savez`` and
readable with ``np.load(path, allow_pickle=False)``. Gradients are named ``grad_<param>`` and ``grad_x``.
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import torch  # noqa: E402
import fastfeedforward  # noqa: E402

from tests.test_crosscheck_torch import (LEAF_NAMES, NT_NAMES, package_fff, package_in_float64,  # noqa: E402
                                         package_soft_and_grads, torch_neuron_tree)

SOURCE = f"torch {torch.__version__}, fastfeedforward {getattr(fastfeedforward, '__version__', '0.2.1')}"


def torch_leaf_index(params, x):
    """Hard descent in torch: k = 2k + 1 + [a_k >= 0], depth times; the leaf j = k - n_nodes."""
    nw, nb = torch.from_numpy(params["node_weights"]), torch.from_numpy(params["node_biases"][:, 0])
    xt = torch.from_numpy(x)
    n_nodes = nw.shape[0]
    k = torch.zeros(x.shape[0], dtype=torch.long)
    smallest = np.inf
    for _ in range(int(n_nodes + 1).bit_length() - 1):
        a = (xt * nw[k]).sum(dim=1) + nb[k]
        smallest = min(smallest, float(a.abs().min()))
        k = 2 * k + 1 + (a >= 0).long()
    return (k - n_nodes).numpy(), smallest


def make_leaf(path, depth, activation, hardening, seed, D=6, l=3, O=4, n=8):
    rng = np.random.default_rng(seed)
    N, L = 2 ** depth - 1, 2 ** depth
    shapes = {"node_weights": (N, D), "node_biases": (N, 1), "w1s": (L, D, l), "b1s": (L, l),
              "w2s": (L, l, O), "b2s": (L, O)}
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    x = rng.normal(size=(n, D))
    dL_dy = rng.normal(size=(n, O))
    leaf, smallest = torch_leaf_index(params, x)
    assert smallest > 1e-6, "a tie (a = 0) in the golden inputs: choose another seed"
    out = dict(params, depth=np.int64(depth), activation=np.str_(activation), hardening=np.float64(hardening),
               x=x, dL_dy=dL_dy, leaf=leaf.astype(np.int64), source=np.str_(SOURCE))
    with package_in_float64():
        module = package_fff(params, activation)
        y_soft, l_harden, grads, grad_x = package_soft_and_grads(module, x, dL_dy, hardening)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            y_hard = module.train()(xt, use_hard_decisions=True).numpy()
            if depth:
                out["y_package_eval"] = module.eval()(xt).numpy()
    assert y_soft.dtype == np.float64
    out.update(y_soft=y_soft, y_hard=y_hard, l_harden=np.float64(l_harden if depth else 0.0), grad_x=grad_x)
    out.update({"grad_" + k: v for k, v in grads.items()})
    if depth:  # the package's eval is its hard forward without b2s
        np.testing.assert_allclose(out["y_package_eval"], y_hard - params["b2s"][leaf], rtol=1e-12, atol=1e-12)
    np.savez(path, **out)


def make_neuron_tree(path, depth, parallel_size, seed, D=6, O=4, n=8):
    rng = np.random.default_rng(seed)
    rows = parallel_size * (2 ** (depth + 1) - 1)
    params = {"linear_in.weight": rng.normal(size=(rows, D)), "linear_in.bias": rng.normal(size=rows),
              "linear_out.weight": rng.normal(size=(O, rows))}
    x = rng.normal(size=(n, D))
    dL_dy = rng.normal(size=(n, O))
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt = torch.tensor(x, requires_grad=True)
    y, visited = torch_neuron_tree(tp, xt, depth, parallel_size)
    (y * torch.from_numpy(dL_dy)).sum().backward()
    logits = (xt @ tp["linear_in.weight"].T + tp["linear_in.bias"]).detach().numpy()
    assert np.abs(logits).min() > 1e-6, "a tie (a = 0) in the golden inputs: choose another seed"
    out = dict(params, depth=np.int64(depth), parallel_size=np.int64(parallel_size),
               activation=np.str_("gelu"), x=x, dL_dy=dL_dy, y=y.detach().numpy(),
               rows=visited.numpy().astype(np.int64), grad_x=xt.grad.numpy(), source=np.str_(SOURCE))
    out.update({"grad_" + k: tp[k].grad.numpy() for k in NT_NAMES})
    np.savez(path, **out)


def main():
    make_leaf(HERE / "leaf_d0_relu.npz", 0, "relu", 0.0, seed=10)
    make_leaf(HERE / "leaf_d2_relu.npz", 2, "relu", 0.5, seed=11)
    make_leaf(HERE / "leaf_d3_gelu.npz", 3, "gelu", 2.0, seed=12)
    make_neuron_tree(HERE / "neuron_tree_p1_d2.npz", 2, 1, seed=20)
    make_neuron_tree(HERE / "neuron_tree_p2_d3.npz", 3, 2, seed=21)
    for p in sorted(HERE.glob("*.npz")):
        print(f"{p.name}: {p.stat().st_size} bytes")
    assert set(LEAF_NAMES) <= set(np.load(HERE / "leaf_d2_relu.npz", allow_pickle=False).files)


if __name__ == "__main__":
    main()
