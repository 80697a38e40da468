"""The README's Python quickstart runs exactly as written, and every link in the README points inside
the repository."""

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_python_quickstart_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "README.md must show the Python API in a ```python block"
    out = io.StringIO()
    namespace = {"__name__": "readme"}
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), namespace)  # our own README, not user input
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("ok ") and float(lines[0].split()[1]) > 0.5
    assert "'acc'" in lines[1] and "feedback/layer0" in lines[2]
    assert namespace["learner"].network is namespace["net"]


def test_links_stay_inside_the_repository():
    for target in re.findall(r"\]\(([^)#]+)", README) + re.findall(r"`(\.\./[^`]+)`", README):
        assert not target.startswith(("..", "/", "http")), target
        assert (ROOT / target).exists(), target
