"""Evals: golden sets, a runner through the gateway, scorers, and a regression gate.

    dataset.py   JSONL cases, strictly validated; sampling from logged traffic (ledger.log_prompts)
    store.py     results and scores in the ledger database (migration 009_eval_results)
    scorers.py   SCORERS registry: exact, contains, regex, json_valid, rouge_l, embedding, llm_judge
    runner.py    concurrent, resumable runs through an OpenAI-compatible gateway
    compare.py   per-scorer means with bootstrap CIs, per-tag breakdown, worst regressions, the gate

The CLI (`hedgeway eval sample|run|compare|runs`) is hedgeway/cli/eval.py.
"""
