"""Unit tests (no cluster) for the pure logic behind lessons 01-03."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from labkit import lessons
from labkit.cluster.kwok_backend import stage_files
from labkit.course import exercises
from labkit.display import figures
from labkit.kube import events, rollouts
from labkit.kube.wait import deployment_failed
from labkit.lessons import deployment_rollouts


def dep(generation=2, observed=2, **status):
    return {"kind": "Deployment", "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 3}, "status": {"observedGeneration": observed, **status}}


def test_rollout_state_words_like_kubectl():
    assert rollouts.rollout_state(dep(observed=1))[1] == "Waiting for deployment spec update to be observed..."
    assert rollouts.rollout_state(dep(updatedReplicas=1, replicas=3))[1].endswith(
        "1 out of 3 new replicas have been updated...")
    assert "old replicas are pending termination" in rollouts.rollout_state(
        dep(updatedReplicas=3, replicas=4, availableReplicas=3))[1]
    assert rollouts.rollout_state(dep(updatedReplicas=3, replicas=3, availableReplicas=3)) == (
        True, 'deployment "web" successfully rolled out')


def test_progress_deadline_only_counts_for_the_current_spec_and_recent_transitions():
    cond = {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "timed out",
            "lastTransitionTime": "2030-01-01T00:00:10Z"}
    obj = dep(conditions=[cond])
    assert deployment_failed(obj) == "ProgressDeadlineExceeded: timed out"
    assert deployment_failed(dep(observed=1, conditions=[cond])) is None
    began = pd.Timestamp("2030-01-01T00:00:10Z").timestamp()
    # A deadline exceeded before the wait (an undo follows a failed rollout) is not held against the new rollout.
    assert deployment_failed(obj, since=began + 5) is None
    assert deployment_failed(obj, since=began - 5) is not None


def test_statefulset_partition_state():
    sts = {"kind": "StatefulSet", "metadata": {"name": "db", "generation": 1},
           "spec": {"replicas": 3, "updateStrategy": {"rollingUpdate": {"partition": 2}}},
           "status": {"observedGeneration": 1, "readyReplicas": 3, "updatedReplicas": 1}}
    assert rollouts.rollout_state(sts) == (True, "partitioned roll out complete: 1 new pods have been updated...")


def test_max_unavailable_percentages_round_down_and_surge_rounds_up():
    assert deployment_rollouts._resolve("25%", 4, round_up=False) == 1
    assert deployment_rollouts._resolve("25%", 3, round_up=False) == 0
    assert deployment_rollouts._resolve("25%", 3, round_up=True) == 1
    assert deployment_rollouts._resolve(None, 8, round_up=False) == 2
    assert deployment_rollouts._resolve(2, 8, round_up=False) == 2


def rows(*items):
    return pd.DataFrame([dict(zip(events.COLUMNS, i, strict=False)) for i in items], columns=events.COLUMNS)


def test_ready_by_revision_replays_an_instant_at_a_time():
    table = rows(
        (0.0, "ReplicaSet", "LISTED", "web-aaa", "1", None, 2, None, None, "aaa"),
        (0.0, "Pod", "LISTED", "web-aaa-1", "aaa", "Running", True, 0),
        (0.0, "Pod", "LISTED", "web-aaa-2", "aaa", "Running", True, 0),
        (1.0, "ReplicaSet", "ADDED", "web-bbb", "2", None, 0, None, None, "bbb"),
        (1.0, "Pod", "ADDED", "web-bbb-1", "bbb", "Pending", False, 0),
        (2.0, "Pod", "MODIFIED", "web-bbb-1", "bbb", "Running", True, 0),
        (3.0, "Pod", "MODIFIED", "web-aaa-1", "aaa", "Terminating", True, 0),
        (4.0, "Pod", "DELETED", "web-aaa-1", "aaa", "Terminating", True, 0),
    )
    per = events.ready_by_revision(table)
    at = {(r.t, r.revision): r.ready for r in per.itertuples()}
    assert at[(0.0, "1")] == 2 and at[(2.0, "2")] == 1 and at[(3.0, "1")] == 1 and at[(4.0, "1")] == 1
    # The initial list is one instant: no ramp from 1 to 2 ready pods.
    assert events.min_ready_during(table) == 2


def test_timelines_are_figures_with_a_trace_per_revision():
    table = rows((0.0, "Pod", "LISTED", "a", "x", "Running", True, 0),
                 (1.0, "Event", "ADDED", "e1", None, "Warning", None, 1, "Unhealthy", "probe failed", "pod/a"))
    fig = figures.rollout_timeline(table)
    assert [t.name for t in fig.data] == ["revision x", "all ready"]
    assert {t.name for t in figures.probe_timeline(table).data} >= {"Unhealthy"}


def test_progress_is_recorded_per_exercise(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "p.json")
    exercises.record("01-recover", False)
    exercises.record("01-recover", True)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["01-recover"]["attempts"] == 2 and data["01-recover"]["passed"] is True
    table = lessons.progress().set_index("exercise")
    assert table.loc["01-recover", "passed"] and not table.loc["01-rollout-v3", "passed"]
    assert list(lessons.progress("01").exercise) == ["01-recover", "01-rollout-v3"]


def test_result_text_says_what_is_wrong_and_the_hint():
    r = exercises.Result("x", passed=False, problems=["image is old"], hint="set the image")
    assert str(r) == "NOT YET x:\n  - image is old\n  hint: set the image"
    assert str(exercises.Result("x", passed=True)) == "PASS x: well done."
    solved = exercises.Result("x", passed=True, solved_by_test=True, failed_unsolved=True)
    assert str(solved) == "PASS x: well done. (test run, LABKIT_IN_TEST=1: NOT YET before the solution was applied)"


def test_every_exercise_has_task_hint_solution_and_a_test_solver():
    for ex in lessons.catalogue().exercises.values():
        assert ex.task and ex.hint and ex.solution and ex.solve, ex.id
        assert ex.id[:2] in {r.number for r in lessons.records()}, f"{ex.id} is not named after its lesson's number"


def _counting_exercise(passes_after: int):
    calls = {"check": 0, "solve": 0}

    def check(attempt):
        calls["check"] += 1
        return [] if attempt.answer == "right" and calls["check"] > passes_after else ["not yet"]

    def solve(attempt):
        calls["solve"] += 1
        return "right"

    return exercises.Exercise("99-x", "task", "hint", "solution", check=check, solve=solve), calls


def test_a_learner_check_looks_once_and_never_solves(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "p.json")
    monkeypatch.delenv("LABKIT_IN_TEST", raising=False)
    ex, calls = _counting_exercise(passes_after=0)
    result = exercises.Catalogue([ex]).check("99-x", exercises.Attempt(None, "ns"))
    assert not result.passed and result.hint == "hint" and calls == {"check": 1, "solve": 0}


def test_under_test_a_check_solves_then_waits_for_the_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "p.json")
    monkeypatch.setenv("LABKIT_IN_TEST", "1")
    ex, calls = _counting_exercise(passes_after=3)
    result = exercises.Catalogue([ex]).check("99-x", exercises.Attempt(None, "ns"), timeout=10)
    assert result.passed and result.solved_by_test and result.failed_unsolved and calls == {"check": 4, "solve": 1}


def test_under_test_a_check_that_never_passes_gives_up_at_its_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(exercises, "progress_file", lambda: tmp_path / "p.json")
    monkeypatch.setenv("LABKIT_IN_TEST", "1")
    ex, _ = _counting_exercise(passes_after=10**9)
    result = exercises.Catalogue([ex]).check("99-x", exercises.Attempt(None, "ns"), timeout=0.6)
    assert not result.passed and result.problems == ["not yet"]


def test_duplicate_exercise_ids_are_refused():
    ex, _ = _counting_exercise(passes_after=0)
    with pytest.raises(ValueError, match="99-x"):
        exercises.Catalogue([ex, ex])


def test_stage_files_are_kwok_stages_with_unique_names():
    names = []
    for path in stage_files():
        for doc in yaml.safe_load_all(path.read_text()):
            items = doc["items"] if doc["kind"] == "List" else [doc]
            for item in items:
                assert item["apiVersion"] == "kwok.x-k8s.io/v1alpha1" and item["kind"] == "Stage"
                names.append(item["metadata"]["name"])
    assert len(names) == len(set(names))
    assert {"labkit-node-initialize", "labkit-node-heartbeat", "labkit-pod-delete", "labkit-pod-complete"} <= set(names)


def test_a_lesson_is_its_module_notebook_and_test_the_rest_reads_its_record() -> None:
    """What reads a lesson's record (labkit.course.Lesson): the notebooks on disk, the README's table, the exercise
    catalogue, classroom mode and the browser test. A new lesson is one module, one notebook, one test file."""
    root = Path(__file__).resolve().parents[2]
    records = lessons.records()
    assert [r.number for r in records] == [f"{i:02d}" for i in range(len(records))]
    on_disk = sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [r.notebook for r in records] == on_disk
    readme = (root / "README.md").read_text()
    table = readme.split("<!-- lessons:", 1)[1].split("-->\n", 1)[1].split("\n<!-- end lessons -->", 1)[0]
    assert table.splitlines() == ["| notebook | topic |", "| --- | --- |",
                                  *(f"| `{r.notebook}` | {r.topic} |" for r in records)]
    assert {ex.id[:2] for ex in lessons.catalogue().exercises.values()} <= {r.number for r in records}
    assert all(ex in lessons.catalogue().exercises.values() for r in records for ex in r.exercises)
    browser = (root / "tests" / "browser" / "test_notebooks_in_browser.py").read_text()
    assert "records()" in browser  # the browser pass runs the notebooks the records name


def test_each_lesson_module_names_its_record_once() -> None:
    """``LESSON`` is the record: a module that also used the name for something else (a namespace) lost it."""
    import ast

    for path in (Path(lessons.__file__).parent).glob("*.py"):
        tree = ast.parse(path.read_text())
        assigned = [n for n in tree.body if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "LESSON" for t in n.targets)]
        assert len(assigned) <= 1, f"{path.name} assigns LESSON {len(assigned)} times"


def test_every_notebook_reaches_labkit_one_way() -> None:
    """One import idiom: ``import labkit as lk``, and a lesson's own helpers as ``lk.lessons.lesson("NN")`` (the
    Chinese edition's notebooks copy these cells, so there is one way to read)."""
    import json
    import re

    root = Path(__file__).resolve().parents[2]
    for record in lessons.records():
        cells = json.loads((root / "notebooks" / f"{record.notebook}.ipynb").read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        imports = re.findall(r"^\s*(?:import labkit\b.*|from labkit\b.*)$", code, re.M)
        assert imports and all(line.strip().startswith("import labkit as lk") for line in imports), \
            (record.notebook, imports)
        helpers = set(re.findall(r'lk\.lessons\.lesson\("(\d\d)"\)', code))
        assert helpers <= {record.number}, (record.notebook, helpers)  # its own lesson's helpers, never another's


def test_every_lesson_says_where_it_lives_on_huawei_cloud() -> None:
    """Each notebook ends with its table from docs/huawei-cloud.md (the one copy that is edited): what the lesson ran
    and the CCE feature that does it, each row citing Huawei Cloud's public documentation or saying it found none."""
    import json
    import re

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "huawei-cloud.md").read_text()
    tables = dict(re.findall(r"^## (\d\d) \w+\n\n(\|.*?)(?=\n\n## |\Z)", doc, re.S | re.M))
    for record in lessons.records():
        cells = json.loads((root / "notebooks" / f"{record.notebook}.ipynb").read_text())["cells"]
        last = "".join(cells[-1]["source"])
        assert cells[-1]["cell_type"] == "markdown" and last.startswith("## Where it lives on Huawei Cloud"), \
            record.notebook
        table = tables[record.number].strip()
        assert table in last, f"{record.notebook}: its Huawei Cloud table differs from docs/huawei-cloud.md"
        rows = table.splitlines()[2:]
        assert len(rows) >= 2 and all("support.huaweicloud.com" in r or "no public page found" in r for r in rows), \
            (record.notebook, rows)


def test_every_lesson_with_exercises_says_why_its_stored_check_passes() -> None:
    """A learner reads PASS under an empty answer cell in the stored notebook: a "Your turn" note says why."""
    import json

    root = Path(__file__).resolve().parents[2]
    for record in lessons.records():
        if not record.exercises:
            continue
        cells = json.loads((root / "notebooks" / f"{record.notebook}.ipynb").read_text())["cells"]
        texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        notes = [t for t in texts if "*Your turn:*" in t]
        assert notes and all("LABKIT_IN_TEST=1" in n for n in notes), record.notebook


def test_a_check_whose_object_is_missing_says_so(monkeypatch) -> None:
    """Attempt.require: the one problem a check reports when what it looks at is not in the namespace."""
    from labkit.course import exercises
    from labkit.kube import objects

    found: dict[str, dict] = {}
    monkeypatch.setattr(objects, "get", lambda lab, kind, name, **kw: found.get(name))

    def check(attempt: exercises.Attempt) -> list[str]:
        dep = attempt.require("Deployment", "render", api_version="apps/v1", why="run the cell above the exercise")
        return [] if dep["spec"]["replicas"] == 2 else ["not 2 replicas"]

    ex = exercises.Exercise(id="xx-demo", task="t", hint="h", solution="s", check=check)
    attempt = exercises.Attempt(lab=None, namespace="ns")
    assert exercises.problems_of(ex, attempt) == [
        "there is no Deployment `render` in this namespace (run the cell above the exercise)"]
    found["render"] = {"spec": {"replicas": 2}}
    assert exercises.problems_of(ex, attempt) == []


def test_every_lesson_has_at_least_two_exercises() -> None:
    """Each lesson asks the learner to act at least twice (kubectl, YAML, PromQL or LogsQL they type)."""
    few = {record.notebook: len(record.exercises) for record in lessons.records() if len(record.exercises) < 2}
    assert not few, few


# A cell a learner could type in a terminal or a query box: a shell line (`!kubectl`, `!curl`, `!nvidia-smi`), a
# manifest, or a PromQL/LogsQL expression written out as the first argument of a query.
TYPEABLE = re.compile(r"^\s*!|apiVersion:|\b(?:query|query_range|wait_query|wait_for_series|wait_for_value|"
                      r"recorded_vs_query)\(\s*f?['\"]", re.M)


def test_kubectl_first_at_least_a_third_of_each_lessons_code_cells_can_be_typed() -> None:
    import json

    root = Path(__file__).resolve().parents[2]
    ratios = {}
    for record in lessons.records():
        cells = json.loads((root / "notebooks" / f"{record.notebook}.ipynb").read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        ratios[record.notebook] = sum(bool(TYPEABLE.search(src)) for src in code) / len(code)
    low = {name: round(r, 2) for name, r in ratios.items() if r < 1 / 3}
    assert not low, f"lessons whose code cells are mostly helper calls: {low}"


def test_the_typeable_pattern_tells_a_command_from_a_helper() -> None:
    assert TYPEABLE.search("x = 1\n!kubectl get pods")
    assert TYPEABLE.search("lesson.query('up{job=\"x\"}')")
    assert TYPEABLE.search('lk.apply(lab, """\napiVersion: v1\nkind: Pod\n""")')
    assert not TYPEABLE.search("lesson.crds(lab)   # kubectl get crd")
    assert not TYPEABLE.search("lk.promql.query(expr)")
