"""Fixtures of the hidden checks: ``student``, ``ref``, ``grade_device`` and ``overfit_choice``.

Under ``rcnn-kit grade`` the runner registers :class:`autograder.runner.GraderPlugin`,
which owns the sandbox children and the outcome records; these fixtures only delegate to
it. When the checks are run directly (``pytest autograder/checks``, handy while writing
checks), a plugin is registered here that grades the folder named by the environment
variable ``RCNN_GRADE_SUBMISSION`` (default: the reference itself, which must pass).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest

from rcnn_kit.course import REFERENCE_DIR

from autograder.overfit_profile import OverfitChoice
from autograder.runner import PLUGIN_NAME, GradeSettings, GraderPlugin
from autograder.sandbox import SandboxClient

#: The reference package folder when the checks run from a source checkout.
_SOURCE_REFERENCE = Path(__file__).resolve().parents[2] / REFERENCE_DIR


def _registered(config: pytest.Config) -> GraderPlugin | None:
    """The runner's plugin (passed to ``pytest.main(plugins=...)``), or the one registered here."""
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, GraderPlugin):
            return plugin
    return None


def pytest_configure(config: pytest.Config) -> None:
    if _registered(config) is not None:
        return
    import shutil
    import tempfile

    from autograder.intake import load_submission

    os.environ.setdefault("RCNN_KIT_OFFLINE", "1")
    target = Path(os.environ.get("RCNN_GRADE_SUBMISSION", str(_SOURCE_REFERENCE)))
    scratch = Path(tempfile.mkdtemp(prefix="rcnn-checks-"))
    config.add_cleanup(lambda: shutil.rmtree(scratch, ignore_errors=True))
    submission = load_submission(target, scratch / "submission")
    os.chmod(scratch, 0o711)
    plugin = GraderPlugin(GradeSettings(reference_dir=_SOURCE_REFERENCE), submission.found, scratch)
    config.pluginmanager.register(plugin, PLUGIN_NAME)


def _plugin(request: pytest.FixtureRequest) -> GraderPlugin:
    plugin = _registered(request.config)
    if plugin is None:  # pragma: no cover - pytest_configure above always registers one
        raise RuntimeError(f"the {PLUGIN_NAME} plugin is not registered")
    return plugin


@pytest.fixture
def student(request: pytest.FixtureRequest) -> SandboxClient:
    """The sandbox client of this check's rubric group (one persistent child per group)."""
    return _plugin(request).student_for(request.node)


@pytest.fixture(scope="session")
def ref(request: pytest.FixtureRequest) -> ModuleType:
    """The reference package (trusted; imported in the grader), submodules ``ref.iou`` ..."""
    return _plugin(request).reference()


@pytest.fixture(scope="session")
def grade_device(request: pytest.FixtureRequest) -> str:
    """``"cpu"`` or ``"cuda"``: where the student's code runs in this grading run."""
    return _plugin(request).settings.device


@pytest.fixture(scope="session")
def overfit_choice(request: pytest.FixtureRequest) -> OverfitChoice:
    """The instructor's overfit profile and data flags of this grading run."""
    return _plugin(request).settings.overfit
