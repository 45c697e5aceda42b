"""Embed fffcpu inference in a plain Python program: load a model once, answer requests in a loop.

No framework, no server library: the program reads one request per line (numbers separated by
spaces or commas, ``input_width`` of them) from a file or standard input and writes one answer per
line: the index of the largest output (its class name, for a model saved with names: ``fffcpu train``
on text labels such as ``setosa``, or ``fffcpu.save(layer, path, classes=...)``; read them with
``fffcpu.load(path, with_classes=True)``), then the outputs. A malformed request gets an ``error:``
line and the loop goes on.

Two ways to call the layer, both log-time hard inference:

- single sample: ``layer(x)`` with ``x`` of shape (input_width,) returns shape (output_width,);
  for a small batch (under 8 rows) the Numba kernel runs serially, one descent per sample, and
  releases the GIL, so several Python threads can answer requests at once;
- batch: ``layer(X)`` with ``X`` of shape (n, input_width) runs one parallel kernel over the rows
  (``fffcpu.set_num_threads`` sets how many threads).

``fffcpu.warmup()`` compiles (or loads from Numba's disk cache) every inference kernel before the
first request, so no request pays for compilation.

Run::

    python examples/embed_inference.py --train-demo digits_fff.npz   # a small model to play with
    python -c "import fffcpu.data as d; X, _ = d.load_digits(); [print(*r) for r in X[:5]]" \\
        | python examples/embed_inference.py digits_fff.npz
    python examples/embed_inference.py digits_fff.npz --input requests.txt --batch 256
"""
import argparse
import os
import sys
import time

import numpy as np

import fffcpu


def parse_request(line):
    """One request line -> a 1-D float array; raises ValueError for a malformed line."""
    fields = line.replace(",", " ").split()
    try:
        return np.array([float(f) for f in fields])
    except ValueError:
        raise ValueError(f"a request must be numbers separated by spaces or commas, got {line.strip()[:60]!r}") from None


def answer(y, classes=None):
    """One output vector (output_width,) -> the answer line: argmax (or its name in ``classes``, the
    model's class names), then the outputs."""
    k = int(np.argmax(y))
    return f"{k if classes is None else classes[k]}\t" + " ".join(f"{v:.5g}" for v in y)


def serve_one_by_one(layer, lines, out, classes=None):
    """Answer each request as it arrives with the single-sample API; returns the latencies in seconds."""
    latencies = []
    for line in lines:
        if not line.strip():
            continue
        t0 = time.perf_counter()
        try:
            y = layer(parse_request(line))  # (input_width,) -> (output_width,)
        except ValueError as exc:  # wrong width, NaN, not numbers: report and go on
            out.write(f"error: {exc}\n")
            continue
        latencies.append(time.perf_counter() - t0)
        out.write(answer(y, classes) + "\n")
    return latencies


def serve_in_batches(layer, lines, out, batch_size, classes=None):
    """Collect ``batch_size`` requests, answer them with one batch call; returns seconds per batch."""
    times, pending = [], []

    def flush():
        good = [req for req in pending if not isinstance(req, str)]  # strings are error messages
        Y = None
        if good:
            t0 = time.perf_counter()
            Y = layer(np.stack(good))  # (n, input_width) -> (n, output_width), one parallel kernel call
            times.append(time.perf_counter() - t0)
        i = 0
        for req in pending:  # answers in request order
            if isinstance(req, str):
                out.write(f"error: {req}\n")
            else:
                out.write(answer(Y[i], classes) + "\n")
                i += 1
        pending.clear()

    for line in lines:
        if not line.strip():
            continue
        try:
            x = parse_request(line)
            if x.shape != (layer.input_width,):
                raise ValueError(f"a request must hold input_width = {layer.input_width} numbers, got {x.size}")
            with np.errstate(over="ignore"):
                x = x.astype(layer.dtype)  # checked as the layer holds it: 1e50 is inf in float32
            if not np.isfinite(x).all():
                raise ValueError(f"a request must hold finite numbers within the model's "
                                 f"{np.dtype(layer.dtype).name} range, got NaN, inf or a value beyond it")
            pending.append(x)
        except ValueError as exc:
            pending.append(str(exc))
        if len(pending) == batch_size:
            flush()
    flush()
    return times


def train_demo(path):
    """Train a small FFF on the built-in 8x8 digits and save it to ``path``."""
    from fffcpu.data import digits_split
    from fffcpu.training import evaluate, fit

    X_train, X_test, y_train, y_test = digits_split()
    layer = fffcpu.FFF(input_width=64, leaf_width=16, output_width=10, depth=2, seed=0)
    fit(layer, X_train, y_train, epochs=20, lr=3e-3, hardening=lambda e: 0.0 if e < 10 else 1.0, seed=0)
    fffcpu.save(layer, path)
    print(f"wrote {path}: {layer!r}, hard test accuracy {evaluate(layer, X_test, y_test)['accuracy']:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="a model saved with fffcpu.save")
    parser.add_argument("--input", help="file of requests, one per line (default: standard input)")
    parser.add_argument("--batch", type=int, default=0, metavar="N",
                        help="answer N requests per call with the batch API (default 0: one by one)")
    parser.add_argument("--train-demo", metavar="PATH", help="train a small digits model, save it to PATH, exit")
    args = parser.parse_args(argv)
    if args.model is None and not args.train_demo:
        parser.error("give a MODEL file (or --train-demo PATH to make one)")
    if args.batch < 0:
        parser.error(f"--batch must be >= 0, got {args.batch}")

    try:  # a file that is missing, or is no model: one line, not a traceback
        if args.train_demo:
            train_demo(args.train_demo)
            return 0
        # validates the file, never unpickles; classes: the class names saved with the model, or None
        layer, classes = fffcpu.load(args.model, with_classes=True)
        source = open(args.input, encoding="utf-8") if args.input else sys.stdin
    except (fffcpu.io.ModelFileError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    fffcpu.warmup(dtypes=(np.dtype(layer.dtype).name,))
    print(f"loaded {layer!r}", file=sys.stderr)

    try:
        if args.batch:
            times = serve_in_batches(layer, source, sys.stdout, args.batch, classes)
            what = f"{len(times)} batch calls of up to {args.batch}"
        else:
            times = serve_one_by_one(layer, source, sys.stdout, classes)
            what = f"{len(times)} single-sample calls"
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as a shell tool does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit would fail again
        return 141
    finally:
        if args.input:
            source.close()
    if times:
        t = np.array(times) * 1e6
        print(f"{what}: median {np.median(t):.1f} us, max {t.max():.1f} us (including input checks)",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
