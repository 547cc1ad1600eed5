"""Golden-set validation: errors name the line and the field; round trip; sampling from ledger rows."""

from __future__ import annotations

import json

import pytest

from hedgeway.errors import ConfigError
from hedgeway.evals import dataset


def write(tmp_path, *lines: str):
    p = tmp_path / "set.jsonl"
    p.write_text("\n".join(lines) + "\n")
    return p


GOOD = json.dumps({"id": "a", "prompt": "hi", "reference": "hello", "tags": ["t"]})


@pytest.mark.parametrize("line, where, message", [
    ('{"id": "b", "prompt": "x", "refrence": "y"}', "set.jsonl:3: refrence", "Extra inputs"),
    ('{"id": "b", "messages": [{"content": "x"}]}', "set.jsonl:3: messages[0].role", "Field required"),
    ('{"id": "b"}', "set.jsonl:3: case", "exactly one of `messages` or `prompt`"),
    ('{"id": "b", "prompt": "x", "messages": [{"role": "user", "content": "x"}]}', "set.jsonl:3", "exactly one"),
    ('{"id": "", "prompt": "x"}', "set.jsonl:3: id", "at least 1"),
    ('{"id": "b", "prompt": "x", "tags": "t"}', "set.jsonl:3: tags", "valid list"),
    ('{"id": "b", "prompt": "x", "scorers": {"regex": "a"}}', "set.jsonl:3: scorers.regex", "dictionary"),
    ('{"id": "b", "prompt": "x"', "set.jsonl:3", "invalid JSON"),
    ('["b"]', "set.jsonl:3", "JSON object"),
    ('{"id": "a", "prompt": "again"}', "set.jsonl:3: id", "duplicate id 'a' (first on line 1)"),
])
def test_errors_name_line_and_field(tmp_path, line, where, message):
    with pytest.raises(ConfigError) as info:
        dataset.load(write(tmp_path, GOOD, "", line))  # line 2 is blank (skipped, still counted)
    assert str(info.value).startswith(where) and message in str(info.value), str(info.value)


def test_load_dump_round_trip(tmp_path):
    p = write(tmp_path, GOOD, "// a comment", json.dumps({
        "id": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2"}],
        "reference": "4", "scorers": {"regex": {"pattern": "4"}}}))
    cases = dataset.load(p)
    assert [c.id for c in cases] == ["a", "m"]
    assert cases[0].chat_messages() == [{"role": "user", "content": "hi"}]
    assert cases[1].chat_messages()[0] == {"role": "system", "content": "be brief"}
    out = tmp_path / "out.jsonl"
    dataset.dump(cases, out)
    assert dataset.load(out) == cases
    with pytest.raises(ConfigError, match="no cases"):
        dataset.load(write(tmp_path, "", "// nothing"))


def test_from_ledger_samples_seeded_and_skips_non_chat_prompts():
    rows = [(f"r{i}", "m", json.dumps([{"role": "user", "content": f"q{i}"}])) for i in range(20)]
    rows.append(("emb", "m", json.dumps("an embeddings input")))
    a = dataset.from_ledger(rows, 5, seed=1)
    assert len(a) == 5 and a == dataset.from_ledger(rows, 5, seed=1)
    assert [c.id for c in a] != [c.id for c in dataset.from_ledger(rows, 5, seed=2)]
    every = dataset.from_ledger(rows, 100)
    assert len(every) == 20 and "emb" not in {c.id for c in every} and every[0].tags == ["m"]
