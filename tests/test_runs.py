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


def test_resume_after_a_line_cut_inside_a_utf8_character(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with JsonLog(path, Row) as log:
        log.append(Row(name="é"))
    whole = Row(name="naïve – 日本").model_dump_json().encode()
    with path.open("ab") as handle:  # killed in the middle of a 3-byte character
        handle.write(whole[: whole.index("日".encode()) + 1])
    with JsonLog(path, Row) as log:
        log.append(Row(name="next"))
    assert [r.name for r in JsonLog(path, Row).read()] == ["é", "next"]


def test_a_row_holding_line_separators_stays_one_row(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    name = "a\u2028b\u0085c\u2029d\x1ce"
    with JsonLog(path, Row) as log:
        log.append(Row(name=name))
        log.append(Row(name="after"))
    assert [r.name for r in JsonLog(path, Row).read()] == [name, "after"]
