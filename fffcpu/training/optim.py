"""Optimizers in NumPy that update a layer's ``params`` arrays in place.

    opt = Adam(layer.params, lr=1e-3)
    grads, _ = layer.backward(cache, dL_dy)
    opt.step(grads)                       # every array in layer.params changes in place

Update rules (g the gradient, p the parameter, t the step count of p, from 1):

SGD       g <- g + wd p;  b <- mu b + g (b = g at the first step);  g <- g + mu b (Nesterov) or b;
          p <- p - lr g.                                          (as torch.optim.SGD, dampening 0)
Adam      g <- g + wd p (L2, ``decoupled=False``)  or  p <- p (1 - lr wd) (AdamW, ``decoupled=True``);
          m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
          p <- p - (lr / (1 - b1^t)) m / (sqrt(v / (1 - b2^t)) + eps).      (as torch.optim.Adam/AdamW)

Local variants (SPEC §1 "Local optimizers", after the fastfeedforward package v0.2): a parameter
array is cut into blocks along axis 0 (one routing node of ``node_weights``/``node_biases``, one
leaf of ``w1s``/``b1s``/``w2s``/``b2s``). Each block accumulates its gradient and its usage u_i
(the number of samples routed to it) across steps; it is updated only once u_i >= local_batch_size,
with the accumulated gradient times local_batch_size / u_i, and then its accumulator and u_i
restart from 0. A block that is not updated keeps its optimizer state (momentum, moments, step
count) untouched; each block counts its own steps for Adam's bias correction. The package's
LocalAdam decays the moments of blocks that are not due, which SPEC calls a bug; this one does not.
"""
import numbers

import numpy as np

from .._validate import check_bool, check_int, check_nonneg_float


def _check_params(params):
    if not hasattr(params, "items"):
        raise TypeError(
            f"params must be a dict name -> ndarray (for example layer.params), got {type(params).__name__}"
        )
    for name, p in params.items():
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            what = f"ndarray of dtype {p.dtype}" if isinstance(p, np.ndarray) else type(p).__name__
            raise TypeError(f"params[{name!r}] must be a float ndarray, got {what}")
        if not p.flags.writeable:
            raise ValueError(f"params[{name!r}] must be writeable: optimizers update it in place")
    return params


def _check_betas(betas):
    if not isinstance(betas, (tuple, list, np.ndarray)) or len(betas) != 2 or not all(isinstance(b, numbers.Real) and 0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


def _per_row(values, ndim, dtype):
    """Shape a (rows,) vector to broadcast against rows of an ``ndim``-d array."""
    return np.asarray(values, dtype=dtype).reshape((-1,) + (1,) * (ndim - 1))


class Optimizer:
    """Base class: keeps ``params`` (updated in place) and per-parameter state.

    Subclasses implement ``_update(name, p, g, rows)``: apply one step to ``p[rows]`` with the
    gradient ``g`` (already restricted to those rows), or to the whole of ``p`` when ``rows`` is None.
    """

    def __init__(self, params, lr):
        self.params = _check_params(params)
        self.lr = check_nonneg_float("lr", lr)
        self.state = {}

    def _check_grads(self, grads):
        if not hasattr(grads, "items"):
            raise TypeError(f"grads must be a dict name -> ndarray, got {type(grads).__name__}")
        for name, g in grads.items():
            if name not in self.params:
                raise KeyError(f"grads has {name!r}, which is not a parameter (params: {list(self.params)})")
            if np.shape(g) != self.params[name].shape:
                raise ValueError(
                    f"grads[{name!r}] must have the parameter's shape {self.params[name].shape}, "
                    f"got {np.shape(g)}"
                )
            self._check_state_shape(name)

    def _check_state_shape(self, name):
        """The state of ``name`` (moments, momentum, accumulated gradient) was made for the shape the
        parameter had then; a parameter rebound to another shape failed deep in a broadcast."""
        shape = self.params[name].shape
        held = [a.shape for a in self.state.get(name, {}).values() if a.ndim == len(shape) and a.shape != shape]
        held += [a.shape for a in (getattr(self, "accum", {}).get(name),) if a is not None and a.shape != shape]
        if held:
            raise ValueError(
                f"params[{name!r}] has shape {shape}, but this optimizer's state for it was made for shape "
                f"{held[0]}: build a new optimizer after changing a parameter's shape"
            )

    def step(self, grads):
        """Apply one update to every parameter that has an entry in ``grads``.

        Parameters
        ----------
        grads : dict name -> ndarray
            Same names and shapes as ``params`` (a subset is fine: the others are left alone).
        """
        self._check_grads(grads)
        for name, g in grads.items():
            p = self.params[name]
            self._update(name, p, np.asarray(g, dtype=p.dtype), None)

    def _update(self, name, p, g, rows):  # pragma: no cover - abstract
        raise NotImplementedError

    def _steps(self, name, p):
        """Per-row step counters of parameter ``name`` (a 0-d parameter has one counter)."""
        st = self.state.setdefault(name, {})
        if "t" not in st:
            st["t"] = np.zeros(p.shape[:1] if p.ndim else (), dtype=np.int64)
        return st


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

    Parameters
    ----------
    params : dict name -> ndarray
        Updated in place.
    lr : float
    momentum : float in [0, 1), default 0
    nesterov : bool, default False
        Needs ``momentum > 0``.
    weight_decay : float >= 0, default 0
        Adds ``weight_decay * p`` to the gradient.
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum = check_nonneg_float("momentum", momentum)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        self.nesterov = check_bool("nesterov", nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        self.weight_decay = check_nonneg_float("weight_decay", weight_decay)

    def _update(self, name, p, g, rows):
        target = p if rows is None else p[rows]
        if self.weight_decay:
            g = g + self.weight_decay * target
        if self.momentum:
            st = self.state.setdefault(name, {})
            if "buf" not in st:
                st["buf"] = np.zeros_like(p)  # b = mu*0 + g = g at a block's first step
            if rows is None:
                buf = st["buf"]
                buf *= self.momentum
                buf += g
            else:
                buf = self.momentum * st["buf"][rows] + g
                st["buf"][rows] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        if rows is None:
            p -= self.lr * g
        else:
            p[rows] = target - self.lr * g


class Adam(Optimizer):
    """Adam, or AdamW with ``decoupled=True``.

    Parameters
    ----------
    params : dict name -> ndarray
        Updated in place.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float >= 0, default 0
    decoupled : bool, default False
        False: L2 penalty added to the gradient (torch.optim.Adam); True: the parameter itself
        shrinks by ``lr * weight_decay`` before the step (torch.optim.AdamW).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, lr)
        self.betas = _check_betas(betas)
        self.eps = check_nonneg_float("eps", eps)
        self.weight_decay = check_nonneg_float("weight_decay", weight_decay)
        self.decoupled = check_bool("decoupled", decoupled)

    def _update(self, name, p, g, rows):
        b1, b2 = self.betas
        st = self._steps(name, p)
        if "m" not in st:
            st["m"] = np.zeros_like(p)
            st["v"] = np.zeros_like(p)
        target = p if rows is None else p[rows]
        if self.weight_decay and not self.decoupled:
            g = g + self.weight_decay * target
        if rows is None:
            st["t"] += 1
            m, v, t = st["m"], st["v"], st["t"]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
        else:
            st["t"][rows] += 1
            t = st["t"][rows]
            m = b1 * st["m"][rows] + (1 - b1) * g
            v = b2 * st["v"][rows] + (1 - b2) * (g * g)
            st["m"][rows] = m
            st["v"][rows] = v
        if p.ndim:
            step_size = _per_row(self.lr / (1 - b1 ** t), p.ndim, p.dtype)
            sqrt_bc2 = _per_row(np.sqrt(1 - b2 ** t), p.ndim, p.dtype)
        else:
            step_size = p.dtype.type(self.lr / (1 - b1 ** t))
            sqrt_bc2 = p.dtype.type(np.sqrt(1 - b2 ** t))
        if self.weight_decay and self.decoupled:
            decayed = target * p.dtype.type(1 - self.lr * self.weight_decay)
        else:
            decayed = target
        new = decayed - step_size * m / (np.sqrt(v) / sqrt_bc2 + p.dtype.type(self.eps))
        if rows is None:
            p[...] = new
        else:
            p[rows] = new


class AdamW(Adam):
    """Adam with decoupled weight decay (default ``weight_decay=0.01``, as torch.optim.AdamW)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, decoupled=True)


# -- local variants -------------------------------------------------------------------------
class _Local:
    """Per-block gradient accumulation and usage-gated updates (module docstring)."""

    needs_usage = True

    def _init_local(self, local_batch_size, blocks):
        self.local_batch_size = check_int("local_batch_size", local_batch_size, minimum=1)
        if blocks is not None:
            blocks = tuple(blocks)
            for name in blocks:
                if name not in self.params:
                    raise KeyError(f"blocks names {name!r}, which is not a parameter (params: {list(self.params)})")
                if self.params[name].ndim == 0:
                    raise ValueError(f"blocks: parameter {name!r} is a scalar and cannot be cut into blocks")
        self.blocks = blocks
        self.accum = {}  # name -> accumulated gradient, shape of the parameter
        self.block_usage = {}  # name -> (n_blocks,) usage since the block's last update

    def step(self, grads, usage):
        """Accumulate ``grads`` and ``usage``; update the blocks that are due.

        Parameters
        ----------
        grads : dict name -> ndarray
        usage : dict name -> ndarray of shape (n_blocks,)
            Samples routed to each block in this step (``layer.block_usage(cache)``). Parameters
            in ``blocks`` (default: those with a ``usage`` entry) are local; any other parameter in
            ``grads`` gets an ordinary update every step.

        Returns
        -------
        dict name -> ndarray of bool
            For each local parameter, which blocks were updated.
        """
        self._check_grads(grads)
        local = self.blocks if self.blocks is not None else tuple(n for n in grads if n in usage)
        # every usage entry is checked before any parameter changes: a bad one leaves all untouched
        counts = {name: self._check_usage(name, usage) for name in grads if name in local}
        updated = {}
        for name, g in grads.items():
            p = self.params[name]
            g = np.asarray(g, dtype=p.dtype)
            if name not in local:
                self._update(name, p, g, None)
                continue
            u_step = counts[name]
            if name not in self.accum:
                self.accum[name] = np.zeros_like(p)
                self.block_usage[name] = np.zeros(p.shape[0], dtype=np.float64)
            acc, u = self.accum[name], self.block_usage[name]
            acc += g
            u += u_step
            due = np.flatnonzero(u >= self.local_batch_size)
            updated[name] = u >= self.local_batch_size
            if due.size:
                scale = _per_row(self.local_batch_size / u[due], p.ndim, p.dtype)
                self._update(name, p, acc[due] * scale, due)
                acc[due] = 0
                u[due] = 0
        return updated


    def _check_usage(self, name, usage):
        """``usage[name]`` as float64 counts, one per block of parameter ``name``, all finite and >= 0."""
        if name not in usage:
            raise KeyError(f"usage has no entry for the local parameter {name!r}")
        shape = self.params[name].shape[:1]
        u_step = np.asarray(usage[name], dtype=np.float64)
        if u_step.shape != shape:
            raise ValueError(f"usage[{name!r}] must have shape {shape} (one count per block), got {u_step.shape}")
        bad = u_step[~(np.isfinite(u_step) & (u_step >= 0))]
        if bad.size:
            raise ValueError(f"usage[{name!r}] must hold finite counts >= 0, got {bad.size} other(s), "
                             f"first {bad[0]}")
        return u_step


class LocalSGD(_Local, SGD):
    """:class:`SGD` whose blocks update only after ``local_batch_size`` samples used them.

    Parameters
    ----------
    params : dict name -> ndarray
    local_batch_size : int >= 1
    blocks : iterable of str, optional
        The parameters cut into blocks along axis 0; default: every parameter given a ``usage``
        entry at each step.
    lr, momentum, nesterov, weight_decay : as :class:`SGD`
    """

    def __init__(self, params, local_batch_size, lr=0.01, momentum=0.0, nesterov=False,
                 weight_decay=0.0, blocks=None):
        SGD.__init__(self, params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        self._init_local(local_batch_size, blocks)


class LocalAdam(_Local, Adam):
    """:class:`Adam` (AdamW with ``decoupled=True``) with per-block, usage-gated updates.

    Parameters
    ----------
    params : dict name -> ndarray
    local_batch_size : int >= 1
    blocks : iterable of str, optional
        As :class:`LocalSGD`.
    lr, betas, eps, weight_decay, decoupled : as :class:`Adam`
    """

    def __init__(self, params, local_batch_size, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                 weight_decay=0.0, decoupled=False, blocks=None):
        Adam.__init__(self, params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                      decoupled=decoupled)
        self._init_local(local_batch_size, blocks)


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "local-sgd", "local-adam", "local-adamw")


def make_optimizer(name, params, lr=None, weight_decay=None, local_batch_size=None, **kwargs):
    """Build an optimizer by name (what the command line and the estimators use).

    Parameters
    ----------
    name : str or Optimizer
        One of ``OPTIMIZERS``: "sgd"; "momentum" (SGD, momentum 0.9); "nesterov" (SGD, Nesterov
        0.9); "adam"; "adamw"; "local-sgd", "local-adam", "local-adamw" (need ``local_batch_size``).
        An Optimizer instance is returned as it is.
    params : dict name -> ndarray
    lr : float, optional
        Default 0.1 for the SGD family, 1e-3 for the Adam family.
    weight_decay : float >= 0, optional
        Default 0.01 for "adamw" and "local-adamw" (decoupled, as torch.optim.AdamW), 0 for the
        others (L2 added to the gradient).
    local_batch_size : int, optional
        For the local variants; default 64. Refused for the others (it would have no effect).
    **kwargs
        Passed on (betas, eps, momentum, ...).
    """
    if isinstance(name, Optimizer):
        return name
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    if local_batch_size is not None and not name.startswith("local"):
        raise ValueError(
            f"local_batch_size applies to the local optimizers (local-sgd, local-adam, local-adamw) only, "
            f"got local_batch_size={local_batch_size!r} for optimizer {name!r}"
        )
    sgd_family = name in ("sgd", "momentum", "nesterov", "local-sgd")
    if lr is None:
        lr = 0.1 if sgd_family else 1e-3
    if weight_decay is None:
        weight_decay = 0.01 if name.endswith("adamw") else 0.0
    if name == "momentum":
        kwargs.setdefault("momentum", 0.9)
    if name == "nesterov":
        kwargs.setdefault("momentum", 0.9)
        kwargs["nesterov"] = True
    if name.startswith("local"):
        lbs = 64 if local_batch_size is None else local_batch_size
        if name == "local-sgd":
            return LocalSGD(params, lbs, lr=lr, weight_decay=weight_decay, **kwargs)
        return LocalAdam(params, lbs, lr=lr, weight_decay=weight_decay,
                         decoupled=(name == "local-adamw"), **kwargs)
    if sgd_family:
        return SGD(params, lr=lr, weight_decay=weight_decay, **kwargs)
    return Adam(params, lr=lr, weight_decay=weight_decay, decoupled=(name == "adamw"), **kwargs)
