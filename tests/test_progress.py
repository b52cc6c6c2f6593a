"""helper.progress(): what a learner checked and passed, recorded by helper.check in this kernel."""

import json

import nbformat
import pytest
from nbclient import NotebookClient

import helper
from helper.progress import _is_unanswered


@pytest.fixture(autouse=True)
def fresh_kernel_state():
    helper.reset_progress()
    yield
    helper.reset_progress()


def test_nothing_checked_lists_every_exercise_as_not_checked(capsys):
    report = helper.progress_report()
    assert sorted(e for lesson in report.values() for e in lesson) == sorted(helper.EXERCISES)
    assert all(r == {"tries": 0, "passed": False} for lesson in report.values() for r in lesson.values())
    helper.progress()
    out = capsys.readouterr().out
    assert "lesson 01: 0 of 4 passed, 0 checked" in out
    assert f"course: 0 of {len(helper.EXERCISES)} exercises passed" in out


def test_checks_are_counted_and_passed_stays_passed(capsys):
    helper.check("01.int8_range", (0, 255))        # wrong
    helper.check("01.int8_range", (-128, 127))     # right
    helper.check("01.int8_range", (0, 1))          # wrong again: still passed
    helper.check("01.bf16_memory_7b", 7e9)         # wrong (FP32 thinking is 28e9; 7e9 is one byte each)
    helper.check("02.t5_bf16_footprint", ...)      # not answered: not recorded
    capsys.readouterr()
    report = helper.progress_report()
    assert report["01"]["01.int8_range"] == {"tries": 3, "passed": True}
    assert report["01"]["01.bf16_memory_7b"] == {"tries": 1, "passed": False}
    assert report["02"]["02.t5_bf16_footprint"] == {"tries": 0, "passed": False}
    helper.progress()
    out = capsys.readouterr().out
    assert "lesson 01: 1 of 4 passed, 2 checked" in out
    assert "✓ 01.int8_range" in out and "passed (3 tries)" in out
    assert "· 01.bf16_memory_7b" in out and "not yet (1 try)" in out
    assert "lesson 02: 0 of 3 passed, 0 checked" in out and "02.t5_bf16_footprint" not in out


def test_an_empty_function_is_not_an_attempt_but_a_written_one_is():
    def my_pack_2bit(values):
        ...  # return a uint8 tensor

    def my_wrong_pack(values):
        return values

    assert _is_unanswered(...) and _is_unanswered(None) and _is_unanswered(my_pack_2bit)
    assert not _is_unanswered(my_wrong_pack) and not _is_unanswered(0)
    helper.check("04.pack_2bit", my_pack_2bit)
    helper.check("04.pack_2bit", my_wrong_pack)
    assert helper.progress_report()["04"]["04.pack_2bit"] == {"tries": 1, "passed": False}


def test_progress_writes_a_json_to_hand_in(tmp_path, capsys):
    helper.check("01.int8_range", (-128, 127))
    path = tmp_path / "ana.json"
    helper.progress(path, learner="Ana")
    assert f"written to {path}" in capsys.readouterr().out
    document = json.loads(path.read_text())
    assert document["course"] == "Quantization Fundamentals" and document["learner"] == "Ana"
    assert document["passed"] == 1 and document["exercises"] == len(helper.EXERCISES)
    assert document["lessons"]["01"]["01.int8_range"] == {"tries": 1, "passed": True}
    assert document["written"].endswith("+00:00")


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(TypeError, match="path must be a file name"):
        helper.progress(3)
    with pytest.raises(TypeError, match="learner must be a name"):
        helper.progress(tmp_path / "x.json", learner=7)
    with pytest.raises(ValueError, match="is a folder"):
        helper.progress(tmp_path)


def test_progress_in_a_real_kernel_after_a_learners_cells(tmp_path):
    """A simulated learner: a fresh kernel runs checks as notebook cells, then hands in progress.json."""
    cells = ['import helper',
             'helper.check("01.int8_range", ...)',
             'helper.check("01.int8_range", (-127, 127))',
             'helper.check("01.int8_range", (-128, 127))',
             'helper.check("03.sqnr_8bit_sine", 49.93)',
             'helper.progress("progress.json", learner="Ben")']
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   ).execute()
    printed = ["".join(o.get("text", "") for o in c.outputs) for c in notebook.cells]
    assert printed[1].startswith("Not yet: replace ...") and printed[2].startswith("Not yet")
    assert printed[3].startswith("Right!") and printed[4].startswith("Right!")
    assert "lesson 01: 1 of 4 passed, 1 checked" in printed[5] and "passed (2 tries)" in printed[5]
    assert "lesson 03: 1 of 4 passed, 1 checked" in printed[5]
    document = json.loads((tmp_path / "progress.json").read_text())
    assert document["learner"] == "Ben" and document["passed"] == 2
    assert document["lessons"]["01"]["01.int8_range"] == {"tries": 2, "passed": True}
