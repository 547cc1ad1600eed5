"""The pairwise judge's verdict parsing (many formats; garbage and contradictions are unparsed, never
guessed) and the position swap: two orders combined so that a judge biased to a position gives ties."""

from __future__ import annotations

import pytest

from hedgeway.routing.judge import SYSTEM, combine, judge_messages, parse_verdict


@pytest.mark.parametrize("reply, verdict", [
    ("Both are decent, but A cites the law correctly.\n\n[[A]]", "A"),
    ("[[B]]", "B"),
    ("They are equally good. [[C]]", "tie"),
    ("Explanation...\n[[ tie ]]", "tie"),
    ("Verdict: A", "A"),
    ("Reasoning first.\nFinal verdict: Assistant B", "B"),
    ("**Verdict:** tie", "tie"),
    ("Winner = [A]", "A"),
    ("Verdict: C", "tie"),
    ("The better answer is B.", "B"),
    ("Preferred response: Answer A", "A"),
    ("B", "B"),
    ("Assistant A.", "A"),
    ("(B)", "B"),
    ("Assistant A is better.", "A"),
    ("Response B is clearly better than A.", "B"),
    ("Assistant A's answer is better because it is right.", "A"),
    ("It's a tie.", "tie"),
    ("Both answers are equally helpful.", "tie"),
    ('{"winner": "B", "reason": "more complete"}', "B"),
    ('```json\n{"verdict": "tie"}\n```', "tie"),
])
def test_verdict_formats(reply, verdict):
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize("reply", [
    "", "   \n ", "hmm, hard to say", "I prefer the first one", "A and B are both fine",
    "Answer: A is correct but B is better",  # a last line that names both
    "[[A]] ... on reflection [[B]]",  # contradicts itself
    '{"winner": "the first"}', '{"score": 7}', "{not json", "Score: 9", "Verdict: D", "<html>502</html>",
])
def test_garbage_and_contradictions_are_unparsed(reply):
    assert parse_verdict(reply) is None


def test_agreeing_orders_give_the_winner():
    # order 1: A = strong's answer; order 2: A = weak's answer
    assert combine("A", "B") == ("strong", 1.0)
    assert combine("B", "A") == ("weak", 0.0)
    assert combine("tie", "tie") == ("tie", 0.5)


def test_a_judge_biased_to_one_position_yields_ties_not_a_false_winner():
    for position in ("A", "B"):  # it always picks the same slot, whatever is in it
        assert combine(position, position) == ("split", 0.5)
    assert combine("A", "tie") == ("split", 0.5)  # half a preference is a disagreement too


def test_an_unparsed_order_makes_the_label_unparsed():
    assert combine(None, "B") == ("unparsed", None)
    assert combine("A", None) == ("unparsed", None)


def test_judge_messages_show_both_answers_in_the_given_order_and_bound_their_size():
    msgs = judge_messages([{"role": "system", "content": "be brief"},
                           {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"},
                                                        {"type": "image_url", "image_url": {"url": "x"}}]}],
                          "four", "x" * 50_000)
    assert msgs[0] == {"role": "system", "content": SYSTEM}
    text = msgs[1]["content"]
    assert "system: be brief" in text and "user: What is 2+2?" in text
    assert text.index("assistant A's answer]\nfour") < text.index("assistant B's answer]\nxxx")
    assert len(text) < 7000 + 500
    long = judge_messages([{"role": "user", "content": f"turn {i} " + "y" * 3000} for i in range(30)] +
                          [{"role": "user", "content": "the question"}], "a", "b")[1]["content"]
    assert "user: the question" in long and "turn 0 " not in long and len(long) < 2 * 6000 + 500
