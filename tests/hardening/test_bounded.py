"""The bounded table: rows up to a cap, then one overflow row and a count of what was folded."""

from __future__ import annotations

import pytest

from otel_llm_usage._bounded import OVERFLOW_KEY, BoundedTable
from otel_llm_usage.usage import TokenUsage, Usage


def test_rows_up_to_the_limit_then_one_overflow_row() -> None:
    table: BoundedTable[str, Usage] = BoundedTable(3, Usage, OVERFLOW_KEY)
    for i in range(10_000):
        table.row(f"model-{i}").add_call(f"model-{i}", TokenUsage(input=1, output=1), 0.5, False)
    table.row("model-1").add_call("model-1", TokenUsage(input=1, output=1), 0.5, False)  # kept row
    assert len(table) == 3 and table.folded == 9_997
    rows = dict(table.items())
    assert list(rows) == ["model-0", "model-1", "model-2", OVERFLOW_KEY]
    assert rows["model-1"].requests == 2
    assert rows[OVERFLOW_KEY].requests == 9_997  # nothing lost: every call is in some row
    assert sum(u.requests for u in rows.values()) == 10_001
    assert table.get("model-5000") is None and "model-5000" not in table


def test_the_overflow_name_itself_never_becomes_a_row_and_clear_starts_over() -> None:
    table: BoundedTable[str, list[int]] = BoundedTable(5, list, OVERFLOW_KEY)
    table.row(OVERFLOW_KEY).append(1)
    assert len(table) == 0 and table.folded == 1 and table.overflow == [1]
    table.clear()
    assert list(table.items()) == [] and table.folded == 0
    with pytest.raises(ValueError, match="limit"):
        BoundedTable(-1, list, OVERFLOW_KEY)
