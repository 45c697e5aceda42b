"""Make the golden vectors in tests/data/ from the PyTorch side (run once, by hand).

    python tests/data/make_golden.py                     # all files; needs torch and fastfeedforward==0.2.1
    python tests/data/make_golden.py leaf_d2_tanh.npz    # only the files named
    python tests/data/make_golden.py --out /tmp/golden   # elsewhere, to compare with the stored files

Every number in the files comes from torch in float64:

- ``leaf_*.npz``: ``fastfeedforward.FFF`` 0.2.1 itself (its own code, with ``torch.float`` rebound to
  float64, see tests/test_crosscheck_torch.py): soft forward, L_harden, autograd gradients of
  ``sum(y_soft * dL_dy) + hardening * L_harden``, its eval output (``y_package_eval``, which omits
  ``b2s``), and its hard-decision training forward (``y_hard``, which keeps ``b2s``: SPEC's hard forward;
  the inputs have no ties, where its rounding would differ). ``leaf`` comes from a torch descent
  (a >= 0 goes right) and is checked against both. At depth 0 the package's eval crashes, so that file
  has no ``y_package_eval``; its ``y_hard`` is the soft forward (one leaf, no decision), its hardening
  term is left out (the package's mean over zero nodes is NaN; SPEC's L_harden is 0 there).
- ``leaf_*_master_*.npz``: as above, plus the eFFF master leaf (SPEC §3), which the package does not
  have: its arrays ``magic_w1``, ``magic_b1``, ``magic_w2``, ``magic_b2``, ``k``, and the mix
  ``y = s y_tree + (1 - s) M(x)``, ``s = sigmoid(k)``, ``M(x) = act(x @ magic_w1[0] + magic_b1[0]) @
  magic_w2[0] + magic_b2[0]``, written here in torch around the package's own forward (``y_tree``).
  ``y_soft``, ``y_hard`` and the gradients (``grad_magic_*``, ``grad_k`` too) are those of the mix; there
  is no ``y_package_eval`` (the package has no master leaf to evaluate).
- ``neuron_tree_*.npz``: the torch rendering of SPEC §2 in tests/test_crosscheck_torch.py (UltraFastBERT's
  masked training forward), its output ``y``, visited rows ``rows`` (n, P, depth+1) and autograd gradients
  of ``sum(y * dL_dy)``.
- ``fffcpu_leaf_d2_master_sigmoid.npz``: not a golden vector but a model file in fffcpu's own format,
  written by ``fffcpu.save`` (header included) from the weights of ``leaf_d2_master_sigmoid.npz``, whose
  ``x``, ``y_hard`` and ``y_soft`` are its expected outputs. Its numbers come from that file; only its
  layout comes from fffcpu.

Arrays are float64 (int64 for indices and sizes, a 0-d string for names), saved with ``np.savez`` and
readable with ``np.load(path, allow_pickle=False)``. Gradients are named ``grad_<param>`` and ``grad_x``.
The zip members are dated 1980-01-01 (:func:`fixed_zip_time`), so the same numbers give the same bytes.
"""
import argparse
import contextlib
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import torch  # noqa: E402
import fastfeedforward  # noqa: E402

from tests.test_crosscheck_torch import (LEAF_NAMES, NT_NAMES, package_in_float64,  # noqa: E402
                                         package_soft_and_grads, torch_neuron_tree)

import fffcpu  # noqa: E402

SOURCE = f"torch {torch.__version__}, fastfeedforward {getattr(fastfeedforward, '__version__', '0.2.1')}"
MASTER_NAMES = ("magic_w1", "magic_b1", "magic_w2", "magic_b2", "k")
#: fffcpu's activation names -> torch modules (tests/test_crosscheck_torch.py's map has three of them)
TORCH_MODULES = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh,
                 "sigmoid": torch.nn.Sigmoid, "identity": torch.nn.Identity}


class _FixedTime:
    """Stands in for the ``time`` module inside ``zipfile``: every member is dated 1980-01-01 00:00:00,
    the earliest date a zip header holds, whatever the clock and the time zone."""

    localtime = staticmethod(time.gmtime)  # (before the method below takes the name ``time``)

    @staticmethod
    def time():
        return 315532800.0  # 1980-01-01T00:00:00Z


@contextlib.contextmanager
def fixed_zip_time():
    """Make ``np.savez`` and ``fffcpu.save`` (both write through ``zipfile``) date their members alike."""
    saved = zipfile.time
    zipfile.time = _FixedTime
    try:
        yield
    finally:
        zipfile.time = saved


def package_module(params, activation):
    """A ``fastfeedforward.FFF`` in float64, training mode, holding ``params`` (SPEC §1 names)."""
    L, D, l = params["w1s"].shape
    depth = int(L).bit_length() - 1
    module = fastfeedforward.FFF(D, l, params["w2s"].shape[2], depth, activation=TORCH_MODULES[activation]())
    module = module.to(torch.float64)
    module.load_state_dict({"depth": torch.tensor(depth),
                            **{k: torch.from_numpy(np.asarray(params[k])) for k in LEAF_NAMES}})
    return module.train()


def master_soft_and_grads(module, params, x, dL_dy, hardening, activation):
    """SPEC §3's mix around the package's soft forward: ``(y, l_harden, grads, dL_dx)`` of
    ``sum(y * dL_dy) + hardening * L_harden``, as :func:`package_soft_and_grads` returns them, with the
    master leaf's gradients in ``grads`` too. Run it under :func:`package_in_float64`."""
    module.zero_grad()
    act = TORCH_MODULES[activation]()
    xt = torch.tensor(x, requires_grad=True)
    mp = {k: torch.tensor(params[k], requires_grad=True) for k in MASTER_NAMES}
    y_tree, entropies = module(xt, return_entropies=True)
    M = act(xt @ mp["magic_w1"][0] + mp["magic_b1"][0]) @ mp["magic_w2"][0] + mp["magic_b2"][0]
    s = torch.sigmoid(mp["k"])
    y = s * y_tree + (1 - s) * M
    l_harden = entropies.mean()
    ((y * torch.from_numpy(dL_dy)).sum() + hardening * l_harden).backward()
    grads = {k: getattr(module, k).grad.numpy().copy() for k in LEAF_NAMES}
    grads.update({k: mp[k].grad.numpy().copy() for k in MASTER_NAMES})
    return y.detach().numpy(), float(l_harden.detach()), grads, xt.grad.numpy().copy()


def master_mix(params, x, y_tree, activation):
    """SPEC §3's mix of ``y_tree`` (NumPy) with the master leaf, in torch; a NumPy array."""
    t = {k: torch.from_numpy(np.asarray(params[k])) for k in MASTER_NAMES}
    act = TORCH_MODULES[activation]()
    with torch.no_grad():
        M = act(torch.from_numpy(x) @ t["magic_w1"][0] + t["magic_b1"][0]) @ t["magic_w2"][0] + t["magic_b2"][0]
        s = torch.sigmoid(t["k"])
        return (s * torch.from_numpy(y_tree) + (1 - s) * M).numpy()


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


def make_leaf(path, depth, activation, hardening, seed, D=6, l=3, O=4, n=8, master=0):
    """One ``leaf_*.npz``; ``master``: the width m of an eFFF master leaf (0: none, as the package)."""
    rng = np.random.default_rng(seed)
    N, L = 2 ** depth - 1, 2 ** depth
    shapes = {"node_weights": (N, D), "node_biases": (N, 1), "w1s": (L, D, l), "b1s": (L, l),
              "w2s": (L, l, O), "b2s": (L, O)}
    params = {k: rng.normal(size=s) for k, s in shapes.items()}
    x = rng.normal(size=(n, D))
    dL_dy = rng.normal(size=(n, O))
    if master:  # drawn last, so that the files without one keep their numbers
        shapes = {"magic_w1": (1, D, master), "magic_b1": (1, master), "magic_w2": (1, master, O),
                  "magic_b2": (1, O), "k": ()}
        params.update({k: np.asarray(rng.normal(size=s)) for k, s in shapes.items()})
    leaf, smallest = torch_leaf_index(params, x)
    assert smallest > 1e-6, "a tie (a = 0) in the golden inputs: choose another seed"
    out = dict(params, depth=np.int64(depth), activation=np.str_(activation), hardening=np.float64(hardening),
               x=x, dL_dy=dL_dy, leaf=leaf.astype(np.int64), source=np.str_(SOURCE))
    with package_in_float64():
        module = package_module(params, activation)
        if master:
            y_soft, l_harden, grads, grad_x = master_soft_and_grads(module, params, x, dL_dy, hardening,
                                                                    activation)
        else:
            y_soft, l_harden, grads, grad_x = package_soft_and_grads(module, x, dL_dy, hardening)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            y_hard = module.train()(xt, use_hard_decisions=True).numpy()
            if depth and not master:
                out["y_package_eval"] = module.eval()(xt).numpy()
    if master:
        y_hard = master_mix(params, x, y_hard, activation)
    assert y_soft.dtype == np.float64 and y_hard.dtype == np.float64
    out.update(y_soft=y_soft, y_hard=y_hard, l_harden=np.float64(l_harden if depth else 0.0), grad_x=grad_x)
    out.update({"grad_" + k: v for k, v in grads.items()})
    if "y_package_eval" in out:  # the package's eval is its hard forward without b2s
        np.testing.assert_allclose(out["y_package_eval"], y_hard - params["b2s"][leaf], rtol=1e-12, atol=1e-12)
    np.savez(path, **out)


def make_neuron_tree(path, depth, parallel_size, seed, D=6, O=4, n=8, activation="gelu"):
    rng = np.random.default_rng(seed)
    rows = parallel_size * (2 ** (depth + 1) - 1)
    params = {"linear_in.weight": rng.normal(size=(rows, D)), "linear_in.bias": rng.normal(size=rows),
              "linear_out.weight": rng.normal(size=(O, rows))}
    x = rng.normal(size=(n, D))
    dL_dy = rng.normal(size=(n, O))
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    xt = torch.tensor(x, requires_grad=True)
    y, visited = torch_neuron_tree(tp, xt, depth, parallel_size, activation=TORCH_MODULES[activation]())
    (y * torch.from_numpy(dL_dy)).sum().backward()
    logits = (xt @ tp["linear_in.weight"].T + tp["linear_in.bias"]).detach().numpy()
    assert np.abs(logits).min() > 1e-6, "a tie (a = 0) in the golden inputs: choose another seed"
    out = dict(params, depth=np.int64(depth), parallel_size=np.int64(parallel_size),
               activation=np.str_(activation), x=x, dL_dy=dL_dy, y=y.detach().numpy(),
               rows=visited.numpy().astype(np.int64), grad_x=xt.grad.numpy(), source=np.str_(SOURCE))
    out.update({"grad_" + k: tp[k].grad.numpy() for k in NT_NAMES})
    np.savez(path, **out)


def make_fffcpu_file(path, params, activation):
    """fffcpu's own model format: ``fffcpu.save`` of a float64 layer holding ``params``, as it writes it
    (header, member order, zip64 extra fields), with the members dated as :func:`fixed_zip_time` does."""
    layer = fffcpu.FFF.from_state_dict(params, activation=activation, seed=0, dtype="float64")
    fffcpu.save(layer, path)
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(z["__header__"].tobytes().decode("utf-8"))
        assert all(np.array_equal(z[k], params[k]) for k in params)
    assert header["format_version"] == 1 and header["config"]["activation"] == activation


#: file name -> what makes it; the weights of one leaf file go into the fffcpu-format file
FILES = {
    "leaf_d0_relu.npz": lambda p: make_leaf(p, 0, "relu", 0.0, seed=10),
    "leaf_d2_relu.npz": lambda p: make_leaf(p, 2, "relu", 0.5, seed=11),
    "leaf_d3_gelu.npz": lambda p: make_leaf(p, 3, "gelu", 2.0, seed=12),
    "leaf_d2_tanh.npz": lambda p: make_leaf(p, 2, "tanh", 1.0, seed=13),
    "leaf_d2_master_sigmoid.npz": lambda p: make_leaf(p, 2, "sigmoid", 1.0, seed=14, master=3),
    "neuron_tree_p1_d2.npz": lambda p: make_neuron_tree(p, 2, 1, seed=20),
    "neuron_tree_p2_d3.npz": lambda p: make_neuron_tree(p, 3, 2, seed=21),
    "neuron_tree_p2_d1_identity.npz": lambda p: make_neuron_tree(p, 1, 2, seed=22, activation="identity"),
}
FFFCPU_FILE = ("fffcpu_leaf_d2_master_sigmoid.npz", "leaf_d2_master_sigmoid.npz", "sigmoid")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Make the golden vectors of tests/data.")
    parser.add_argument("names", nargs="*", help=f"files to make (default: all): {[*FILES, FFFCPU_FILE[0]]}")
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write to (default: tests/data)")
    args = parser.parse_args(argv)
    names = args.names or [*FILES, FFFCPU_FILE[0]]
    unknown = [n for n in names if n not in FILES and n != FFFCPU_FILE[0]]
    if unknown:
        parser.error(f"unknown files {unknown}")
    args.out.mkdir(parents=True, exist_ok=True)
    with fixed_zip_time():
        for name in names:
            if name in FILES:
                FILES[name](args.out / name)
        if FFFCPU_FILE[0] in names:
            model, source, activation = FFFCPU_FILE
            if not (args.out / source).exists():  # its numbers come from there
                FILES[source](args.out / source)
            with np.load(args.out / source, allow_pickle=False) as z:
                params = {k: z[k] for k in LEAF_NAMES + MASTER_NAMES}
            make_fffcpu_file(args.out / model, params, activation)
    for name in names:
        print(f"{name}: {(args.out / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
