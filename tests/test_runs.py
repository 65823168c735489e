"""The JSONL log that batch and eval runs resume from."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from longdoc.pipeline.errors import InputError
from longdoc.pipeline.runs import JsonLog


class Row(BaseModel):
    name: str
    ok: bool = True

    @property
    def key(self) -> str:
        return self.name


def test_rows_survive_a_cut_line_and_resume_by_key(tmp_path: Path) -> None:
    path = tmp_path / "out" / "log.jsonl"
    log = JsonLog(path, Row)
    assert log.read() == [] and log.done(lambda r: True) == set()
    with log:
        log.append(Row(name="a"))
        log.append(Row(name="b", ok=False))
    with path.open("a") as handle:  # a kill in the middle of a line
        handle.write('{"name": "cu')
    assert [r.name for r in log.read()] == ["a", "b"]
    with log:  # the cut line is ended, so the next row is whole
        log.append(Row(name="c"))
    assert [r.name for r in log.read()] == ["a", "b", "c"]
    assert log.done(lambda r: r.ok) == {"a", "c"}
    assert path.read_text().splitlines()[2] == '{"name": "cu'


def test_one_writer_at_a_time_and_no_folder(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with JsonLog(path, Row), pytest.raises(InputError, match="being written by another run"):
        JsonLog(path, Row).__enter__()
    with JsonLog(path, Row):  # the lock went with the first writer
        pass
    with pytest.raises(InputError, match=r"--results .* is a folder"):
        JsonLog(tmp_path, Row, option="--results").__enter__()
