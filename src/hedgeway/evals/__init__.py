"""Evals: golden sets, a runner through the gateway, scorers, and a regression gate.

    dataset.py   JSONL cases, strictly validated; sampling from logged traffic (ledger.log_prompts)
    store.py     results and scores in the ledger database (migration 009_eval_results)
    scorers.py   SCORERS registry: exact, contains, regex, json_valid, rouge_l/1/2, bertscore, embedding, llm_judge
    rouge.py     ROUGE-1/2/L as rouge-score 0.1.2 computes them (its tokenizer), bit-parallel LCS
    bertscore.py BERTScore as bert-score 0.3.13 computes it, on the shipped MiniLM int8 token embeddings
    runner.py    concurrent, resumable runs through an OpenAI-compatible gateway
    compare.py   per-scorer means with bootstrap CIs, per-tag breakdown, worst regressions, the gate

The CLI (`hedgeway eval sample|run|compare|runs|score`) is hedgeway/cli/eval.py (score: cli/eval_score.py).
"""
