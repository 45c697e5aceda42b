"""Heap-order index arithmetic for complete binary trees (SPEC §1).

Level m holds nodes 2^m - 1 ... 2^(m+1) - 2; the children of node k are 2k+1 (left) and 2k+2 (right).
In a leaf FFF of depth d the leaves are numbered j = 0 .. 2^d - 1, and leaf j sits at heap index
n_nodes + j: the binary digits of j, most significant first, are the decisions from the root (1 = right).
"""


def n_nodes(depth):
    """Number of routing nodes in a tree of ``depth`` levels of decisions: 2^depth - 1."""
    return (1 << depth) - 1


def n_leaves(depth):
    """Number of leaves reached after ``depth`` decisions: 2^depth."""
    return 1 << depth


def level_slice(m):
    """The heap indices of level m as a slice: 2^m - 1 ... 2^(m+1) - 2."""
    return slice((1 << m) - 1, (1 << (m + 1)) - 1)


def children(k):
    """(left, right) child indices of node k."""
    return 2 * k + 1, 2 * k + 2


def leaf_path(j, depth):
    """The root-to-leaf path of leaf ``j``: a list of ``(node, goes_right)`` pairs, root first."""
    k, path = 0, []
    for m in range(depth - 1, -1, -1):
        right = (j >> m) & 1
        path.append((k, bool(right)))
        k = 2 * k + 1 + right
    return path
