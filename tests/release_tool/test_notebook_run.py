"""The student notebook, run headless through a real Jupyter kernel (nbclient).

With the generated stubs it must stop at the first TODO with the
``NotImplementedError`` naming the function and the file, not with an unrelated
traceback. (The solution notebook's full run happens in
test_nbgrader_roundtrip.py, through ``nbgrader autograde``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from nbclient.exceptions import CellExecutionError

from release_tool.notebook import inject_parameters, make_student_notebook, read_source_notebook
from release_tool.release import SOURCE_NOTEBOOK, render_release

from nbrun import TINY_PARAMETERS, execute

pytestmark = pytest.mark.slow


def test_student_notebook_stops_at_the_first_todo(repo_root: Path, tmp_path: Path) -> None:
    # Write the student package exactly as the release renders it.
    for rel, data in render_release(repo_root).items():
        if rel.startswith("assignments/faster_rcnn/"):
            path = tmp_path / rel.removeprefix("assignments/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    student_nb = make_student_notebook(read_source_notebook(repo_root / SOURCE_NOTEBOOK), str(SOURCE_NOTEBOOK))
    nb = inject_parameters(student_nb, TINY_PARAMETERS)

    with pytest.raises(CellExecutionError) as excinfo:
        execute(nb, tmp_path)

    assert excinfo.value.ename == "NotImplementedError"
    assert "get_fpn_location_coords in faster_rcnn/anchors.py" in excinfo.value.evalue
    failed = [c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert [c.id for c in failed] == ["check_anchors"], "the first student code runs in the anchors check"
    executed = [c for c in nb.cells if c.cell_type == "code" and c.get("execution_count")]
    assert executed[-1].id == "check_anchors", "no cell after the failing one may run"
