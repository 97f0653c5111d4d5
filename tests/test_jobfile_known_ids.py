"""``known_ids``: names "after" may use besides a batch's own jobs (a server's finished ones),
without taking the ids from the batch as ``existing_ids`` does."""

from __future__ import annotations

import pytest

from pq_tui.jobs.jobfile import JobFileError, load_job_files, load_jobs


def test_after_may_name_a_known_job_whose_id_the_batch_may_reuse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.toml").write_text('[[job]]\nid = "build"\ncmd = "true"\n\n'
                                     '[[job]]\nid = "test"\ncmd = "true"\n'
                                     'after = ["flash", "build", "lint"]\n')

    with pytest.raises(JobFileError) as info:
        load_jobs(["a.toml"])
    assert str(info.value).splitlines() == [
        'a.toml:8: job "test": "after" names "flash": no such job in these files or in the queue',
        'a.toml:8: job "test": "after" names "lint": no such job in these files or in the queue',
    ]
    # "build" is known too: the file's own job pushes a new run of it, which "test" waits for.
    loaded = load_jobs(["a.toml"], existing_ids={"lint"}, known_ids={"flash", "build"})
    assert [spec.id for spec in loaded.specs] == ["build", "test"]
    assert [spec.id for spec in load_job_files(["a.toml"], (), ["flash", "lint"])] == [
        "build", "test"]

    with pytest.raises(JobFileError) as info:
        load_jobs(["a.toml"], existing_ids={"build"}, known_ids={"flash", "lint"})
    assert str(info.value).splitlines() == ['a.toml:2: job "build": id already in the queue']

    with pytest.raises(JobFileError) as info:
        load_jobs(["a.toml"], known_ids={"flask", "lint"})
    assert str(info.value).splitlines() == [
        'a.toml:8: job "test": "after" names "flash": no such job in these files or in the queue'
        ' (did you mean "flask"?)',
    ]
