"""fffcpu against the real PyTorch packages on the same weights: forwards, gradients, weight transfer.

Leaf FFF: ``fastfeedforward.FFF`` 0.2.1 (PyPI). Neuron tree: the UltraFastBERT layer is not on PyPI, so
:func:`torch_neuron_tree` below renders SPEC §2 in torch the way its training code computes it (all
logits, the activations off the hard path multiplied by a 0/1 mask built without gradient).

Known differences of the package, each pinned by a test here (docs/porting.md lists them):

- its ``eval_forward`` omits ``b2s`` (SPEC §1): its eval equals our hard forward minus ``b2s`` of the
  chosen leaf, or our hard forward with ``b2s`` zeroed;
- its ``eval_forward`` crashes at depth 0 (its soft training forward works there);
- its hard *training* decisions (``use_hard_decisions`` / ``train_hardened``) are ``round(sigmoid(a))``,
  which sends a tie a = 0 left, while its eval and fffcpu send it right (``a >= 0``);
- its forward allocates float32 buffers (``dtype=torch.float``) whatever the weights' dtype, so a
  float64 comparison runs its code with ``torch.float`` rebound to float64 (:func:`package_in_float64`).

Its hardening loss is ``entropies.mean()`` of ``forward(x, return_entropies=True)``: the per-node batch
means, averaged over the nodes, i.e. SPEC's L_harden (mean over batch and nodes). At depth 0 that mean
is over no nodes and is NaN in torch; fffcpu returns 0.0.
"""
import contextlib
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the cross-checks need PyTorch (pip install fffcpu[torch])")
fastfeedforward = pytest.importorskip(
    "fastfeedforward", reason="the cross-checks need fastfeedforward 0.2.1 (pip install fffcpu[torch])")

import fffcpu  # noqa: E402
from fffcpu import interop  # noqa: E402
from fffcpu.neuron_tree import NeuronTreeFFF  # noqa: E402
from fffcpu.reference import leaf as leaf_ref  # noqa: E402

from .gradcheck import assert_rel  # noqa: E402

LEAF_NAMES = ("node_weights", "node_biases", "w1s", "b1s", "w2s", "b2s")
NT_NAMES = ("linear_in.weight", "linear_in.bias", "linear_out.weight")
TORCH_ACTIVATIONS = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh}


# ---------------------------------------------------------------------------------------------
# the torch side
# ---------------------------------------------------------------------------------------------
class _TorchWithFloat64:
    """``torch``, except that ``torch.float`` is float64 (the package's buffers follow the weights)."""

    float = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def package_in_float64():
    """Run fastfeedforward's own code in float64: its module's ``torch`` name is rebound meanwhile."""
    module = sys.modules[fastfeedforward.FFF.__module__]
    saved = module.torch
    module.torch = _TorchWithFloat64()
    try:
        yield
    finally:
        module.torch = saved


def package_fff(params, activation="relu", dtype=torch.float64, **options):
    """A ``fastfeedforward.FFF`` (training mode) holding ``params`` (NumPy, SPEC §1 names)."""
    L, D, l = params["w1s"].shape
    module = fastfeedforward.FFF(D, l, params["w2s"].shape[2], int(L).bit_length() - 1,
                                 activation=TORCH_ACTIVATIONS[activation](), **options)
    module = module.to(dtype)
    module.load_state_dict({"depth": torch.tensor(int(L).bit_length() - 1),
                            **{k: torch.from_numpy(np.asarray(params[k])) for k in LEAF_NAMES}})
    return module.train()


def package_soft_and_grads(module, x, dL_dy, hardening):
    """The package's soft forward, L_harden, and the gradients of sum(y * dL_dy) + h * L_harden.

    Returns ``(y, l_harden, grads, dL_dx)`` as NumPy arrays (float64 runs need :func:`package_in_float64`).
    """
    module.zero_grad()
    xt = torch.tensor(x, requires_grad=True)
    y, entropies = module(xt, return_entropies=True)  # entropies: per-node batch means (n_nodes,)
    l_harden = entropies.mean()
    loss = (y * torch.from_numpy(dL_dy)).sum()
    if hardening:
        loss = loss + hardening * l_harden
    loss.backward()
    grads = {}
    for k in LEAF_NAMES:  # a parameter that the loss does not reach has grad None
        p = getattr(module, k)
        grads[k] = np.zeros(tuple(p.shape)) if p.grad is None else p.grad.numpy().copy()
    return y.detach().numpy(), float(l_harden.detach()), grads, xt.grad.numpy().copy()


def torch_neuron_tree(params, x, depth, parallel_size, activation=torch.nn.functional.gelu):
    """SPEC §2 in torch, as UltraFastBERT trains it: all P*N logits, a 0/1 path mask built without
    gradient (a > 0 goes right), ``y = (act(logits) * mask) @ linear_out.weight.T``, no output bias.

    ``params``: dict of torch tensors (SPEC §2 names); ``x``: (n, D) tensor. Returns ``(y, rows)``,
    rows (n, P, depth+1) the visited neurons (row indices into linear_in).
    """
    n, P = x.shape[0], parallel_size
    N = 2 ** (depth + 1) - 1
    logits = x @ params["linear_in.weight"].T + params["linear_in.bias"]  # (n, P*N)
    with torch.no_grad():
        right = (logits > 0).view(n, P, N).long()
        node = torch.zeros((n, P, 1), dtype=torch.long)
        mask = torch.zeros((n, P, N), dtype=logits.dtype)
        visited = []
        for _ in range(depth + 1):
            mask.scatter_(2, node, 1.0)
            visited.append(node)
            node = 2 * node + 1 + right.gather(2, node)
        rows = torch.cat(visited, dim=2) + N * torch.arange(P).view(1, P, 1)
    h = activation(logits) * mask.view(n, P * N)
    return h @ params["linear_out.weight"].T, rows


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def random_leaf_params(rng, D, l, O, depth):
    shapes = leaf_ref.param_shapes(D, l, O, depth)
    return {k: rng.normal(size=s) for k, s in shapes.items()}


D, LW, O, N_SAMPLES = 5, 3, 4, 9


def _setup(depth, seed=0):
    rng = np.random.default_rng(seed)
    params = random_leaf_params(rng, D, LW, O, depth)
    x = rng.normal(size=(N_SAMPLES, D))
    dL_dy = rng.normal(size=(N_SAMPLES, O))
    return params, x, dL_dy


# ---------------------------------------------------------------------------------------------
# leaf FFF: forwards
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_soft_forward_matches_package_float64(depth, activation):
    params, x, _ = _setup(depth)
    layer = fffcpu.FFF.from_state_dict(params, activation=activation)
    with package_in_float64():
        y_pkg = package_fff(params, activation)(torch.from_numpy(x)).detach().numpy()
    assert y_pkg.dtype == np.float64
    assert_rel(layer.soft_forward(x), y_pkg, 1e-12, "soft forward")
    y_train, _ = layer.train_forward(x)  # no leak, no dropout: the same mixture
    assert_rel(y_train, y_pkg, 1e-12, "train_forward")


@pytest.mark.parametrize("depth", [0, 3])
def test_soft_forward_matches_package_float32(depth):
    """The package as shipped (float32 buffers) against a float32 fffcpu layer."""
    params, x, _ = _setup(depth, seed=1)
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    layer = fffcpu.FFF.from_state_dict(params32)
    assert layer.dtype is np.float32
    y_pkg = package_fff(params32, dtype=torch.float32)(torch.from_numpy(x.astype(np.float32)))
    assert_rel(layer.soft_forward(x), y_pkg.detach().numpy(), 1e-5, "float32 soft forward")


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_hard_forward_is_package_eval_plus_b2s(depth, backend):
    """The package's eval omits b2s (SPEC §1): show it both ways."""
    params, x, _ = _setup(depth, seed=2)
    layer = fffcpu.FFF.from_state_dict(params, backend=backend)
    module = package_fff(params)
    with package_in_float64():
        y_eval = module.eval()(torch.from_numpy(x)).detach().numpy()
        y_hard_train = module.train()(torch.from_numpy(x), use_hard_decisions=True).detach().numpy()
    leaf = layer.leaf_index(x)
    y = layer(x)
    # 1) our hard forward minus b2s of the chosen leaf
    assert_rel(y - params["b2s"][leaf], y_eval, 1e-12, "hard - b2s[leaf] vs package eval")
    # 2) our hard forward with b2s zeroed
    no_b2s = dict(params, b2s=np.zeros_like(params["b2s"]))
    assert_rel(fffcpu.FFF.from_state_dict(no_b2s, backend=backend)(x), y_eval, 1e-12, "b2s = 0")
    # the package's hard-decision training forward keeps b2s: it equals our hard forward (no ties here)
    assert_rel(y, y_hard_train, 1e-12, "hard forward vs package use_hard_decisions")
    # and the bug is real: without b2s the outputs differ
    assert np.abs(y - y_eval).max() > 1e-3


def test_package_eval_crashes_at_depth_0_and_ours_does_not():
    params, x, _ = _setup(0)
    module = package_fff(params).eval()
    with pytest.raises(UnboundLocalError):
        module(torch.from_numpy(x))
    layer = fffcpu.FFF.from_state_dict(params)
    expected = np.maximum(x @ params["w1s"][0] + params["b1s"][0], 0) @ params["w2s"][0] + params["b2s"][0]
    assert_rel(layer(x), expected, 1e-12, "depth 0 hard forward")


def test_tie_at_zero_goes_right_like_package_eval():
    """a = 0 exactly: fffcpu and the package's eval go right; its round(sigmoid(0)) = 0 goes left."""
    params, _, _ = _setup(1, seed=3)
    params["node_biases"][:] = 0
    x = np.zeros((2, D))
    x[1, 0] = 1.0
    params["node_weights"][0] = 0.0  # a = 0 for both samples
    layer = fffcpu.FFF.from_state_dict(params)
    assert layer.leaf_index(x).tolist() == [1, 1]
    module = package_fff(params)
    with package_in_float64():
        y_eval = module.eval()(torch.from_numpy(x)).detach().numpy()
        y_round = module.train()(torch.from_numpy(x), use_hard_decisions=True).detach().numpy()
    assert_rel(layer(x) - params["b2s"][1], y_eval, 1e-12, "tie: eval goes right")
    assert_rel(leaf_ref.leaf_forward(params, x, 0, "relu"), y_round, 1e-12, "tie: round goes left")


# ---------------------------------------------------------------------------------------------
# leaf FFF: gradients against torch autograd (float64)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,hardening", [(0, 0.0), (1, 0.7), (3, 0.0), (3, 2.5)])
@pytest.mark.parametrize("train_hardened", [False, True])
def test_gradients_match_autograd(depth, hardening, train_hardened):
    params, x, dL_dy = _setup(depth, seed=4)
    layer = fffcpu.FFF.from_state_dict(params, train_hardened=train_hardened)
    y, cache = layer.train_forward(x)
    grads, dL_dx = layer.backward(cache, dL_dy, hardening=hardening)
    with package_in_float64():
        module = package_fff(params, train_hardened=train_hardened)
        y_pkg, l_pkg, g_pkg, dx_pkg = package_soft_and_grads(module, x, dL_dy, hardening)
    assert_rel(y, y_pkg, 1e-12, "forward")
    if depth:
        assert layer.hardening_loss(cache) == pytest.approx(l_pkg, rel=1e-12)
    else:
        assert np.isnan(l_pkg) and layer.hardening_loss(cache) == 0.0
    for name in LEAF_NAMES:
        if g_pkg[name].size:
            assert_rel(grads[name], g_pkg[name], 1e-8, name)
        else:
            assert grads[name].shape == g_pkg[name].shape
    assert_rel(dL_dx, dx_pkg, 1e-8, "dL_dx")


def test_region_leak_one_flips_every_node_like_package():
    """Region leak 1 is deterministic in the package (every decision transposed); compare with the
    reference's flip mask all True, forward and gradients."""
    params, x, dL_dy = _setup(3, seed=5)
    flip = np.ones((N_SAMPLES, 7), dtype=bool)
    y, cache = leaf_ref.soft_forward(params, x, "relu", flip_mask=flip)
    grads, dL_dx = leaf_ref.soft_backward(params, cache, dL_dy, hardening=0.3)
    with package_in_float64():
        module = package_fff(params, region_leak=1.0)
        y_pkg, _, g_pkg, dx_pkg = package_soft_and_grads(module, x, dL_dy, 0.3)
    assert_rel(y, y_pkg, 1e-12, "leaked forward")
    for name in LEAF_NAMES:
        assert_rel(grads[name], g_pkg[name], 1e-8, name)
    assert_rel(dL_dx, dx_pkg, 1e-8, "dL_dx")


# ---------------------------------------------------------------------------------------------
# neuron tree against the torch rendering of SPEC §2
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth,parallel_size", [(0, 1), (2, 1), (3, 2)])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_neuron_tree_matches_torch(depth, parallel_size, backend):
    rng = np.random.default_rng(6)
    layer = NeuronTreeFFF(D, O, depth, parallel_size=parallel_size, seed=7, dtype="float64",
                          backend=backend)
    x = rng.normal(size=(N_SAMPLES, D))
    dL_dy = rng.normal(size=(N_SAMPLES, O))
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in interop.to_numpy_state_dict(layer).items()}
    xt = torch.tensor(x, requires_grad=True)
    y_t, rows = torch_neuron_tree(tp, xt, depth, parallel_size)
    (y_t * torch.from_numpy(dL_dy)).sum().backward()
    assert_rel(layer(x), y_t.detach().numpy(), 1e-12, "hard forward")
    assert (layer.path(x) == rows.numpy() % layer.n_nodes).all()
    y, cache = layer.train_forward(x)
    assert_rel(y, y_t.detach().numpy(), 1e-12, "masked training forward")
    grads, dL_dx = layer.backward(cache, dL_dy)
    for name in NT_NAMES:
        assert_rel(grads[name], tp[name].grad.numpy(), 1e-8, name)
    assert_rel(dL_dx, xt.grad.numpy(), 1e-8, "dL_dx")


# ---------------------------------------------------------------------------------------------
# weight transfer with real torch objects
# ---------------------------------------------------------------------------------------------
def test_fastfeedforward_module_round_trip(tmp_path):
    module = fastfeedforward.FFF(D, LW, O, 2, activation=torch.nn.GELU(), region_leak=0.1,
                                 usage_mode="hard").eval()
    layer = interop.from_fastfeedforward(module)
    assert (layer.activation, layer.region_leak, layer.depth, layer.dtype) == ("gelu", 0.1, 2, np.float32)
    x = np.random.default_rng(8).normal(size=(N_SAMPLES, D)).astype(np.float32)
    leaf = layer.leaf_index(x)
    y_eval = module(torch.from_numpy(x)).detach().numpy()
    assert_rel(layer(x) - layer.params["b2s"][leaf], y_eval, 1e-5, "imported module")
    back = interop.to_fastfeedforward(layer)
    for name in LEAF_NAMES:
        assert torch.equal(getattr(back, name), getattr(module, name))
    # a plain state dict loads into the package's module strictly, from memory and from a .pt file
    fresh = fastfeedforward.FFF(D, LW, O, 2)
    fresh.load_state_dict(interop.to_torch_state_dict(layer))
    interop.save_pt(layer, tmp_path / "m.pt")
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert torch.equal(fresh.w1s, module.w1s)
    again = interop.load_pt(tmp_path / "m.pt", activation="gelu")
    assert_rel(again(x), layer(x), 0, "pt round trip")


def test_fastfeedforward_hyperparameters_both_ways():
    module = fastfeedforward.FFF(D, LW, O, 1, activation=torch.nn.Tanh(), dropout=0.25, train_hardened=True,
                                 region_leak=0.3)
    layer = interop.from_fastfeedforward(module)
    assert (layer.activation, layer.dropout, layer.train_hardened, layer.region_leak) == ("tanh", 0.25, True, 0.3)
    back = interop.to_fastfeedforward(layer)
    assert type(back.activation) is torch.nn.Tanh
    assert (back.dropout, back.train_hardened, back.region_leak) == (0.25, True, 0.3)


def test_package_modules_with_a_rate_of_one():
    """The package takes dropout and region leak in [0, 1]; fffcpu refused region_leak 1.0 (every
    decision transposed in training, a valid setting) and named no way out for dropout 1.0."""
    module = fastfeedforward.FFF(D, LW, O, 1, dropout=0.0, region_leak=1.0)
    layer = interop.from_fastfeedforward(module)
    assert layer.region_leak == 1.0
    x = np.random.default_rng(3).normal(size=(6, D)).astype(np.float32)
    module.eval()
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    layer.params["b2s"][...] = 0  # the package's eval leaves b2s out (docs/porting.md)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)
    dropped = fastfeedforward.FFF(D, LW, O, 1, dropout=1.0)
    with pytest.raises(ValueError, match=r"the module's dropout is 1.0 .*pass from_fastfeedforward\(module, dropout=0.0\)"):
        interop.from_fastfeedforward(dropped)
    assert interop.from_fastfeedforward(dropped, dropout=0.0).dropout == 0.0


def test_tensors_without_plain_numbers_are_refused_by_name(tmp_path, capsys):
    """A meta tensor ended `fffcpu convert` with torch's "Cannot copy out of meta tensor" traceback;
    sparse and quantized tensors gave torch's TypeErrors, naming no array."""
    from fffcpu.cli import main
    with torch.device("meta"):
        meta = fastfeedforward.FFF(D, LW, O, 1)
    torch.save(meta.state_dict(), tmp_path / "meta.pt")
    with pytest.raises(ValueError, match="array 'node_weights' is a tensor on the meta device, which holds no data"):
        interop.load_pt(tmp_path / "meta.pt")
    assert main(["convert", str(tmp_path / "meta.pt"), str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err
    assert "meta device" in err and "Traceback" not in err
    sd = fastfeedforward.FFF(D, LW, O, 1).state_dict()
    for change, match in [(lambda t: t.to_sparse(), "array 'w1s' is a sparse_coo tensor: fffcpu reads dense "
                                                   r"tensors \(tensor.to_dense\(\)\)"),
                          (lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8),
                           r"array 'w1s' is a quantized tensor \(torch.qint8\): dequantize it first")]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch deprecates its quantized tensors
            bad = dict(sd, w1s=change(sd["w1s"]))
        with pytest.raises(ValueError, match=match):
            interop.from_torch_state_dict(bad)
        with pytest.raises(ValueError, match=match):
            fffcpu.FFF.from_state_dict({k: v for k, v in bad.items() if k != "depth"})


def test_a_forest_saved_as_pt_warns_that_the_file_cannot_tell_its_trees(tmp_path):
    """A forest of 5 trees of depth 1 (15 rows) reloaded from fffcpu's own .pt file as one tree of
    depth 3 without a word: the file records no parallel_size."""
    forest = NeuronTreeFFF(8, 4, 1, parallel_size=5, seed=0)
    with pytest.warns(UserWarning, match=r"records no parallel_size: load it with load_pt\(path, parallel_size=5\) .*"
                                         "load as one tree of depth 3, a different model"):
        interop.save_pt(forest, tmp_path / "f.pt")
    assert interop.load_pt(tmp_path / "f.pt", parallel_size=5).parallel_size == 5
    with pytest.warns(UserWarning, match=r"\(it cannot be loaded without it\)"):
        interop.save_pt(NeuronTreeFFF(8, 4, 1, parallel_size=2, seed=0), tmp_path / "g.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one tree: nothing to say
        interop.save_pt(NeuronTreeFFF(8, 4, 2, seed=0), tmp_path / "h.pt")


class UltraFastBERTLikeFFF(torch.nn.Module):
    """The UltraFastBERT layer's parameters (SPEC §2), for state-dict tests."""

    def __init__(self, D, O, depth, parallel_size):
        super().__init__()
        N = 2 ** (depth + 1) - 1
        self.depth, self.parallel_size = depth, parallel_size
        self.linear_in = torch.nn.Linear(D, parallel_size * N, bias=True)
        self.linear_out = torch.nn.Linear(parallel_size * N, O, bias=False)

    def forward(self, x):
        return torch_neuron_tree({"linear_in.weight": self.linear_in.weight,
                                  "linear_in.bias": self.linear_in.bias,
                                  "linear_out.weight": self.linear_out.weight},
                                 x, self.depth, self.parallel_size)[0]


def test_ultrafastbert_state_dict_with_prefix_and_bfloat16(tmp_path):
    torch.manual_seed(0)
    block = torch.nn.Sequential()
    block.add_module("fff", UltraFastBERTLikeFFF(D, O, 2, 2))
    block.add_module("norm", torch.nn.LayerNorm(O))
    sd = {"mlp." + k: v for k, v in block.state_dict().items()}
    layer = interop.from_torch_state_dict(sd, parallel_size=2)  # prefix "mlp.fff." detected
    assert (layer.kind, layer.depth, layer.parallel_size) == ("neuron_tree", 2, 2)
    x = torch.randn(N_SAMPLES, D)
    assert_rel(layer(x.numpy()), block.fff(x).detach().numpy(), 1e-5, "imported neuron tree")
    half = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    assert interop.from_torch_state_dict(half, parallel_size=2).dtype is np.float32
    torch.save(sd, tmp_path / "block.pt")
    assert interop.load_pt(tmp_path / "block.pt", parallel_size=2).parallel_size == 2
    out = interop.to_torch_state_dict(layer, prefix="fff.")
    fresh = UltraFastBERTLikeFFF(D, O, 2, 2)
    fresh.load_state_dict({k[len("fff."):]: v for k, v in out.items()})
    assert_rel(fresh(x).detach().numpy(), block.fff(x).detach().numpy(), 0, "exported neuron tree")
