"""What the repair's executor hands a restore source: the caller's reporter, progress bars included."""

from __future__ import annotations

from registry.repair.steps import _Collecting
from registry.report import RecordingReporter
from store.errors import Next, Text


class _WithBar(RecordingReporter):
    def progress_bar(self) -> type | None:
        return dict  # any class: the one the caller's reporter gives


def test_collecting_passes_the_progress_bar_through():
    assert _Collecting(_WithBar(), []).progress_bar() is dict
    assert _Collecting(RecordingReporter(), []).progress_bar() is None


def test_collecting_keeps_warnings_and_passes_lines_on():
    inner, kept = _WithBar(), []
    collecting = _Collecting(inner, kept)
    warning = Text("cannot restore: run `", Next("validate-registry"), "`")
    collecting.status("restore", "working")
    collecting.warning(warning)
    assert kept == [warning] and inner.lines == [("restore", "working"), ("warning", warning)]
