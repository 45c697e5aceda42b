"""Training quality against the PyTorch reference package (fastfeedforward 0.2.1, torch autograd).

Same data (the built-in digits, standardised), same sizes, same initial weights (the package's,
copied with FFF.from_state_dict), same recipe (Adam, learning rate, epochs, batch order, hardening h):
test accuracy after training must agree within one point, averaged over three seeds. The hard
accuracy of both is computed with fffcpu's hard forward, because the package's eval_forward omits
b2s (SPEC §1).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the cross-check needs torch (pip install fffcpu[torch])")
fastfeedforward = pytest.importorskip(
    "fastfeedforward", reason="the cross-check needs the fastfeedforward package (pip install fffcpu[torch])"
)

import fffcpu  # noqa: E402
from fffcpu.data import digits_split  # noqa: E402
from fffcpu.training import Adam, cross_entropy  # noqa: E402
from fffcpu.training.loop import evaluate, input_scaling, make_generators  # noqa: E402

NAMES = ("node_weights", "node_biases", "w1s", "b1s", "w2s", "b2s")
DEPTH, LEAF, EPOCHS, BATCH, LR, H = 2, 8, 8, 32, 3e-3, 1.0


@pytest.fixture(scope="module")
def digits():
    X_train, X_test, y_train, y_test = digits_split(seed=0)
    mean, scale = input_scaling(X_train)
    f = lambda X: ((X - mean) / scale).astype(np.float32)  # noqa: E731
    return f(X_train), f(X_test), y_train, y_test


def package_layer(seed):
    with torch.random.fork_rng():  # scoped: the global torch generator is left as it was
        torch.manual_seed(seed)
        model = fastfeedforward.FFF(64, LEAF, 10, DEPTH)
    return model


def torch_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if k in NAMES}


def train_package(model, X, y, seed):
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    shuffle_rng, _ = make_generators(seed)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    model.train()
    for _ in range(EPOCHS):
        order = torch.from_numpy(shuffle_rng.permutation(len(X)))
        for b in range(0, len(X), BATCH):
            idx = order[b:b + BATCH]
            out, entropies = model.training_forward(Xt[idx], return_entropies=True)
            loss = torch.nn.functional.cross_entropy(out, yt[idx]) + H * entropies.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_one_step_matches_the_package(digits):
    X, _, y, _ = digits
    model = package_layer(0)
    layer = fffcpu.FFF.from_state_dict(torch_state(model), backend="numpy")
    xb, yb = X[:BATCH], y[:BATCH]
    out, entropies = model.training_forward(torch.from_numpy(xb), return_entropies=True)
    loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(yb)) + H * entropies.mean()
    loss.backward()
    y_ours, cache = layer.train_forward(xb)
    np.testing.assert_allclose(y_ours, out.detach().numpy(), rtol=1e-4, atol=1e-5)
    task, dL_dy = cross_entropy(y_ours, yb)
    assert task + H * layer.hardening_loss(cache) == pytest.approx(loss.item(), rel=1e-5)
    grads, _ = layer.backward(cache, dL_dy, hardening=H)
    for name, p in model.named_parameters():
        if name in NAMES:
            np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-3, atol=1e-6, err_msg=name)


def test_trained_accuracy_matches_the_package(digits):
    X_train, X_test, y_train, y_test = digits
    torch.set_num_threads(2)
    ours, theirs = [], []
    for seed in range(3):
        model = package_layer(seed)
        layer = fffcpu.FFF.from_state_dict(torch_state(model), backend="numpy")
        opt = Adam(layer.params, lr=LR)
        fffcpu.training.fit(layer, X_train, y_train, optimizer=opt, epochs=EPOCHS, batch_size=BATCH,
                            hardening=H, seed=seed)
        train_package(model, X_train, y_train, seed)
        trained = fffcpu.FFF.from_state_dict(torch_state(model), backend="numpy")
        a, b = evaluate(layer, X_test, y_test), evaluate(trained, X_test, y_test)
        ours.append((a["accuracy_soft"], a["accuracy"]))
        theirs.append((b["accuracy_soft"], b["accuracy"]))
    ours, theirs = np.mean(ours, axis=0), np.mean(theirs, axis=0)
    assert theirs[0] > 0.85  # the recipe trains at all
    assert abs(ours[0] - theirs[0]) <= 0.01, (ours, theirs)  # soft
    assert abs(ours[1] - theirs[1]) <= 0.01, (ours, theirs)  # hard
