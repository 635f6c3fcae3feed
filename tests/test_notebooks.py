"""Every notebook in notebooks/ runs top to bottom without a cell error.

Each notebook is executed by nbclient in a fresh IPython kernel of this test's
interpreter (`sys.executable`), with `KERNELCOND_NOTEBOOK_FAST=1` (unless the
environment sets it already) so that every cell runs on much less work. The
notebooks are committed without outputs; that is checked too.
"""

import glob
import json
import os
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "*.ipynb")))


def test_the_quickstarts_exist():
  names = {os.path.basename(p) for p in NOTEBOOKS}
  assert {"kip_quickstart.ipynb", "pruning_quickstart.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_is_committed_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
          f"{os.path.basename(path)} holds outputs; clear them before committing")


@pytest.fixture
def python3_kernel(tmp_path, monkeypatch):
  """A 'python3' kernelspec that starts this interpreter, found first on JUPYTER_PATH."""
  spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
  spec_dir.mkdir(parents=True)
  spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
          "display_name": "Python 3 (kernelcond tests)", "language": "python"}
  (spec_dir / "kernel.json").write_text(json.dumps(spec))
  monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
  monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
  monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
  monkeypatch.setenv("KERNELCOND_NOTEBOOK_FAST", os.environ.get("KERNELCOND_NOTEBOOK_FAST", "1"))
  return "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, python3_kernel):
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name=python3_kernel,
                                   resources={"metadata": {"path": NOTEBOOK_DIR}})
  try:
    client.execute()
  except nbclient.exceptions.CellExecutionError as e:
    pytest.fail(f"{os.path.basename(path)}: a cell failed:\n{str(e)[-4000:]}")
  code_cells = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.execution_count is not None for c in code_cells)
  errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
  assert not errors
  # Every notebook draws something: at least one PNG figure came back from the kernel.
  assert any("image/png" in o.get("data", {}) for c in code_cells for o in c.outputs)
