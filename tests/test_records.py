"""unimae.records: the one-line messages of a record's validation errors name the field's whole path."""

from __future__ import annotations

import pytest
from pydantic.dataclasses import dataclass

from unimae.errors import UserError
from unimae.records import Field, Number, StrictInt, StrictStr, record_config, user_errors


class RecordError(UserError):
    pass


@user_errors(RecordError)
@dataclass(config=record_config(extra="forbid"))
class Entry:
    ids: list[StrictInt]


@user_errors(RecordError)
@dataclass(config=record_config(extra="forbid"))
class Record:
    files: dict[StrictStr, Entry]
    names: StrictStr | list[StrictStr] = "all"
    size: StrictInt = Field(default=1, ge=1)
    weight: Number = 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"files": {"a.txt": {"ids": [1, "2"]}}},
            "files['a.txt'].ids[1]: input should be a valid integer, got '2'",
        ),
        ({"files": {"notes": {"ids": 3}}}, "files.notes.ids: input should be a valid list, got 3"),
        ({"files": {"/x/str": {"ids": [], "more": 1}}}, "files['/x/str'].more: unknown field"),
        ({"files": {}, "names": [1]}, "names: expected str | list[str], got [1]"),  # a union: one problem
        ({"files": {}, "size": 0}, "size: input should be greater than or equal to 1, got 0"),
        ({"files": {}, "other": 0}, "other: unknown field"),
        ({}, "missing field 'files'"),  # a missing field is named on the path of its record
        ({"files": {"a.txt": {}}}, "files['a.txt']: missing field 'ids'"),
        ({"files": {}, "weight": True}, "weight: expected float, got bool True"),
        ({"files": {}, "weight": "1.5"}, "weight: expected float, got str '1.5'"),
    ],
)
def test_errors_name_the_path_with_dict_keys_and_list_indices(kwargs, message):
    with pytest.raises(RecordError) as info:
        Record(**kwargs)
    assert str(info.value) == message


def test_a_number_is_kept_as_written():
    assert type(Record(files={}, weight=3).weight) is int  # not 3.0: a file saves back unchanged
    assert type(Record(files={}, weight=0.5).weight) is float
