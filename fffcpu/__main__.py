"""``python -m fffcpu``: the same as the ``fffcpu`` command."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
