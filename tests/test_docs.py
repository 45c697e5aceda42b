"""Every ```python block in README.md and docs/*.md runs as written (each file's blocks in order);
```python torch blocks too, where torch is installed."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"^```python( torch)?\n(.*?)^```", re.S | re.M)


def python_blocks(page, torch=True):
    """The page's Python blocks in order; ``torch=False`` leaves out those tagged ```python torch."""
    return [code for tag, code in BLOCK.findall(page.read_text(encoding="utf-8")) if torch or not tag]


def _have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_no_python_block_escapes_the_runner():
    """A fence such as ```py, ```Python or ```python3 would be skipped silently by BLOCK."""
    for page in PAGES:
        for tag in re.findall(r"^```(\S.*)$", page.read_text(encoding="utf-8"), re.M):
            if tag.lower().startswith("py"):
                assert tag in ("python", "python torch"), f"{page.name}: ```{tag} is not run; use ```python"


def test_the_pages_have_examples():
    assert python_blocks(ROOT / "README.md"), "README.md must show a usage example"


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files
    namespace = {"__name__": "__doc_example__"}
    for i, code in enumerate(python_blocks(page, torch=_have_torch())):
        exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
