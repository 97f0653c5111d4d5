"""plan_specs works each place (cwd and environment) out once for the jobs that share it: every
plan and every problem is still the one plan_job gives the job alone."""

from __future__ import annotations

import os

from pq_tui.core import JobInputError
from pq_tui.core.plan import plan_job
from pq_tui.jobs.jobfile import JobSpec
from pq_tui.jobs.submit import plan_specs


def spec(job_id, **data):
    data.setdefault("cmd", ["echo", "{_ID_}", "in", "{_WORKDIR_}"])
    return JobSpec(id=job_id, lane="default", data=data, source=f"jobs.toml:{job_id}")


def alone(specs, root):
    base_env = dict(os.environ)
    plans, problems = [], []
    for one in specs:
        try:
            plans.append((one, plan_job(one.id, one.data, root_dir=root, base_env=base_env)))
        except JobInputError as exc:
            problems.append(f'{one.source}: job "{one.id}": {exc}')
    return plans, problems


def test_shared_places_plan_as_each_job_alone(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "j3").mkdir()
    (tmp_path / "file").write_text("")
    specs = [
        spec("j1"), spec("j2"), spec("j3", cwd="{_ID_}"), spec("j4", cwd="{_ID_}"),
        spec("j5", cwd="sub"), spec("j6", cwd=["sub"]), spec("j7", cwd="sub", env={"A": "1"}),
        spec("j8", cwd="sub", env={"A": "2"}, cmd="echo $A {A}"),
        spec("j9", cwd="missing"), spec("j10", cwd="missing"),
        spec("j11", cwd="new", create_cwd=True), spec("j12", cwd="new", create_cwd=True),
        spec("j13", cwd="file"), spec("j14", env={"A": 1}), spec("j15", env={"A": 1.0}),
        spec("j16", env={"A": True}), spec("j17", create_cwd=1), spec("j18", cmd=["{NOPE}"]),
        spec("j19", cmd=""), spec("j20", cwd="sub", env={"A": "1"}, cmd=["{A}", "{_ID_}"]),
        spec("j21", cwd="{HOME}"), spec("j22", cwd="~"), spec("j23", env={"_ID_": "mine"}),
    ]
    plans, problems = plan_specs(specs, root=str(tmp_path))
    expected_plans, expected_problems = alone(specs, str(tmp_path))
    assert problems == expected_problems
    assert [(one.id, vars(plan)) for one, plan in plans] == \
        [(one.id, vars(plan)) for one, plan in expected_plans]
    # The same variables in the same order: the job's environment as it would spawn with.
    assert [list(plan.env) for _one, plan in plans] == \
        [list(plan.env) for _one, plan in expected_plans]
    assert len(problems) == 8  # j4 (no such folder, unlike j3), j9, j10, j13, j16 to j19
