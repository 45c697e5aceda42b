"""Slow, obviously correct oracles: one sample at a time, one neuron at a time, in float64 math.

They follow SPEC §1 and §2 word for word and return the path they took, so tests can check the
routing of every sample as well as the outputs.
"""
import math

import numpy as np


def _act(name, z):
    if name == "relu":
        return max(z, 0.0)
    if name == "gelu":
        return 0.5 * z * (1.0 + math.erf(z / math.sqrt(2.0)))
    if name == "tanh":
        return math.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + math.exp(-z))
    if name == "identity":
        return z
    raise ValueError(name)


def leaf_fff(params, x, activation="relu"):
    """Hard leaf FFF, per sample: returns ``(y (n, O), leaf (n,))``.

    k = 0; d times: k = 2k + 1 + [a_k >= 0]; y = act(x @ w1s[j] + b1s[j]) @ w2s[j] + b2s[j], j = k - n_nodes.
    """
    W, B = params["node_weights"].astype(np.float64), params["node_biases"].astype(np.float64)
    w1s, b1s = params["w1s"].astype(np.float64), params["b1s"].astype(np.float64)
    w2s, b2s = params["w2s"].astype(np.float64), params["b2s"].astype(np.float64)
    n_nodes = W.shape[0]
    n, O = x.shape[0], b2s.shape[1]
    y = np.zeros((n, O))
    leaf = np.zeros(n, dtype=np.int64)
    for s in range(n):
        xs = x[s].astype(np.float64)
        k = 0
        while k < n_nodes:
            a = sum(W[k, i] * xs[i] for i in range(xs.shape[0])) + B[k, 0]
            k = 2 * k + 1 + (1 if a >= 0 else 0)
        j = k - n_nodes
        leaf[s] = j
        h = [_act(activation, float(xs @ w1s[j][:, c]) + b1s[j, c]) for c in range(w1s.shape[2])]
        for o in range(O):
            y[s, o] = sum(h[c] * w2s[j, c, o] for c in range(len(h))) + b2s[j, o]
    return y, leaf


def neuron_tree(w_in, b_in, w_out, depth, parallel_size, x, activation="gelu"):
    """Hard neuron tree, per sample and per tree: returns ``(y (n, O), rows (n, P, depth + 1))``.

    ``w_in`` (P*N, D), ``b_in`` (P*N,), ``w_out`` = linear_out.weight (O, P*N); tree t node k is row t*N + k.
    i_0 = 0, i_(m+1) = 2 i_m + 1 + [a > 0]; y = sum over trees and levels of act(a) * w_out[:, row].
    """
    w_in, b_in, w_out = (np.asarray(a, dtype=np.float64) for a in (w_in, b_in, w_out))
    N = (1 << (depth + 1)) - 1
    n, O = x.shape[0], w_out.shape[0]
    y = np.zeros((n, O))
    rows = np.zeros((n, parallel_size, depth + 1), dtype=np.int64)
    for s in range(n):
        xs = x[s].astype(np.float64)
        for t in range(parallel_size):
            k = 0
            for m in range(depth + 1):
                r = t * N + k
                rows[s, t, m] = r
                a = sum(w_in[r, i] * xs[i] for i in range(xs.shape[0])) + b_in[r]
                g = _act(activation, a)
                for o in range(O):
                    y[s, o] += g * w_out[o, r]
                k = 2 * k + 1 + (1 if a > 0 else 0)
    return y, rows
