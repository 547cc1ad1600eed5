"""`hedgeway demo --router-loop`: a routed name labelling its own traffic, offline and SIMULATED end to end.

A gateway on loopback serves the routed name `auto` with two simulated tiers, priced like gpt-4o (strong)
and gpt-4o-mini (weak), whose answer quality depends on the kind of prompt (KINDS: the weak tier is about as
good on small talk, facts and rewrites, far worse on code, maths and analysis), and a simulated judge with
its own error, a bias to the first position and a few unreadable replies. Every request goes to the strong
tier, as on a route whose router is not proven yet; `learn: {share: 1}` has the gateway label each one
after the user's answer: the weak tier answers the same request and the judge grades the pair in both
orders. The demo reads the labels back from the ledger and shows, per kind of prompt, what they say next
to the simulation's true qualities, and what labelling cost next to the traffic it labelled; then trains
the route's router on them (`router train --from-ledger`), says whether it is proven, and what routing by
its out-of-fold scores would have cost, with the simulation's quality next to it.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from decimal import Decimal

# kind -> (prompt template, fillers for {a} and {b}, the simulation's quality of the strong and weak tier)
KINDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], float, float]] = {
    "small talk": ("Hi! I'm {a}, just saying hello. How is your {b} going?",
                   ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatou", "Gus", "Hana", "Ivo", "Jun"),
                   ("morning", "day", "week", "evening", "weekend"), 0.86, 0.84),
    "facts": ("What is the capital of {a}, and which river flows through it? Answer about its {b}.",
              ("France", "Peru", "Kenya", "Japan", "Chile", "Egypt", "Norway", "Vietnam", "Ghana", "Spain"),
              ("history", "size", "climate", "economy", "food"), 0.88, 0.83),
    "rewrite": ("Rewrite this more politely for a {b}: '{a}'",
                ("Send me the report now.", "Your code is wrong.", "Stop calling me.", "Fix this today.",
                 "That idea is bad.", "You are late again.", "Answer my email.", "This is useless.",
                 "Move your car.", "I need it yesterday."), ("customer", "manager", "colleague", "neighbour",
                                                             "teacher"), 0.85, 0.80),
    "code": ("Write a Python function that {a}, handling {b}, with tests.",
             ("merges overlapping intervals", "parses ISO dates", "finds the k-th largest item",
              "deduplicates a linked list", "validates an IBAN", "computes a rolling median",
              "topologically sorts a graph", "rate-limits calls", "diffs two JSON documents",
              "retries with backoff"), ("empty input", "unicode", "huge inputs", "concurrency", "bad types"),
             0.86, 0.42),
    "maths": ("A tank holds {a} litres and drains {b} litres per minute while a pipe adds 3 litres per minute. "
              "After how many minutes is it empty? Show the steps.",
              ("120", "450", "800", "1000", "75", "333", "640", "2048", "99", "512"),
              ("7", "11", "13", "23", "5"), 0.82, 0.38),
    "analysis": ("Compare {a} and explain the trade-offs for a {b}.",
                 ("PostgreSQL and DynamoDB", "Kafka and RabbitMQ", "REST and gRPC", "monolith and microservices",
                  "Rust and Go", "React and HTMX", "Redis and Memcached", "batch and streaming ETL",
                  "Kubernetes and Nomad", "SQLite and PostgreSQL"),
                 ("startup", "bank", "game studio", "hospital", "newsroom"), 0.84, 0.55),
}


def prompts(n: int, seed: int = 7) -> list[tuple[str, str]]:
    """`n` distinct (kind, prompt) pairs, the kinds in turn."""
    rng = random.Random(seed)
    pools = {kind: [t.format(a=a, b=b) for a in xs for b in ys] for kind, (t, xs, ys, _, _) in KINDS.items()}
    for pool in pools.values():
        rng.shuffle(pool)
    kinds = list(KINDS)
    return [(kinds[i % len(kinds)], pools[kinds[i % len(kinds)]][i // len(kinds) % 50]) for i in range(n)]


def loop_config(master_key: str, ledger_url: str) -> dict:
    def tier(label: str, price: dict, which: int) -> dict:
        rules = [{"match": re.escape(KINDS[k][0].split("{")[0]), "q": KINDS[k][3 + which]} for k in KINDS]
        return {"provider": "simulated-quality", "model": label.replace(" ", "-"), "id": label, "price": price,
                "settings": {"label": label, "ttft_ms": 15, "tokens_per_second": 3000, "max_output_tokens": 60,
                             "quality": rules, "noise": 0.06}}

    return {
        "server": {"host": "127.0.0.1", "port": 0},
        "auth": {"master_key": master_key},
        "ledger": {"url": ledger_url, "flush_interval": 0.05},
        "routing": {"num_retries": 0},
        "router": {"routes": [{"name": "auto", "router": "heuristic", "thresholds": {"medium": 0, "complex": 0},
                               "tiers": {"simple": "weak", "complex": "strong"},
                               "learn": {"share": 1.0, "judge": "judge", "daily_budget": "1.00",
                                         "max_in_flight": 512}}]},
        "models": [
            {"name": "strong", "deployments": [tier("simulated strong (gpt-4o prices)",
                                                    {"input": "2.50", "output": "10.00"}, 0)]},
            {"name": "weak", "deployments": [tier("simulated weak (gpt-4o-mini prices)",
                                                  {"input": "0.15", "output": "0.60"}, 1)]},
            {"name": "judge", "deployments": [{
                "provider": "simulated-judge", "model": "judge", "id": "simulated judge (gpt-4o-mini prices)",
                "price": {"input": "0.15", "output": "0.60"},
                "settings": {"label": "simulated judge", "ttft_ms": 15, "tokens_per_second": 3000,
                             "noise": 0.12, "tie_margin": 0.06, "first_bias": 0.2, "unparsed_rate": 0.02}}]},
        ],
    }


def _wait_labels(store, n: int, patience: float = 5.0) -> list[dict]:
    """The route's label rows once `n` are stored, or when their number stopped growing for `patience` s."""
    last, since = -1, time.monotonic()
    while True:
        rows = store.rows("auto")
        if len(rows) >= n or time.monotonic() - since > patience:
            return rows
        if len(rows) != last:
            last, since = len(rows), time.monotonic()
        time.sleep(0.2)


def run_loop(args) -> int:
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    import openai

    from hedgeway.config import from_dict
    from hedgeway.http.background import BackgroundGateway
    from hedgeway.ledger import open_store
    from hedgeway.routing.label_store import LabelStore

    key = "sk-demo-" + secrets.token_hex(8)
    jobs = prompts(args.requests or 300)
    started = time.time()
    print(f"Hedgeway router-loop demo (SIMULATED models and judge, no network): {len(jobs)} prompts of "
          f"{len(KINDS)} kinds to the routed name `auto`, every one answered by its strong tier and labelled "
          f"after the answer; ledger {args.db}")
    config = from_dict(loop_config(key, args.db))
    with BackgroundGateway(config) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)

        def send(job: tuple[str, str]) -> tuple[str, tuple[str, str]]:
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": job[1]}])
            return raw.headers["x-hedgeway-request-id"], job

        with ThreadPoolExecutor(args.concurrency) as pool:
            sent = dict(pool.map(send, jobs))
        kind_of = {rid: kind for rid, (kind, _) in sent.items()}
        store = LabelStore(args.db)
        try:
            rows = [r for r in _wait_labels(store, len(jobs)) if r["request_id"] in kind_of]
        finally:
            store.close()
    ledger = open_store(args.db)
    records = ledger.records(since=started - 1)
    ledger.close()
    _report(rows, kind_of, records, args.db)
    _train(args.db, {rid: prompt for rid, (_, prompt) in sent.items()}, records, config)
    return 0


def _train(db: str, prompt_of: dict[str, str], records, config) -> None:
    """`router train --from-ledger` on the labels, then what routing by its out-of-fold scores (each prompt
    scored by a router that never saw its label) would have cost and scored, by the simulation's truth."""
    from hedgeway.providers.simulated_quality import SimulatedQualityProvider
    from hedgeway.routing.label_store import read_labels
    from hedgeway.routing.proof import train_from_labels

    report, _, oof = train_from_labels(read_labels(db, "auto"), cv=5, repeats=2, permutations=50, seed=0)
    (lo, hi), (blo, bhi) = report["ci"], report["random_band"]
    print(f"\n`hedgeway router train --from-ledger {db} --route auto`: {report['n']} labels, APGR "
          f"{report['apgr']:.3f} (95% CI {lo:.3f}-{hi:.3f}), random band {blo:.3f}-{bhi:.3f}: "
          f"{'PROVEN' if report['proven'] else 'not proven (the route keeps sending everything to the strong tier)'}")
    tiers = {t: SimulatedQualityProvider(config.models[t][0]) for t in ("strong", "weak")}
    cost = {(r.request_id.removesuffix("-learn-shadow"), "weak" if r.endpoint == "shadow" else "strong"): r.cost
            for r in records if r.endpoint in ("chat", "shadow")}
    ids = [row["id"] for row in sorted(oof, key=lambda row: row["score"]) if (row["id"], "weak") in cost]
    cheap = set(ids[: len(ids) // 2])  # the half the router scores lowest goes to the weak tier
    q = {t: sum(p.quality(prompt_of[i]) for i in ids) / len(ids) for t, p in tiers.items()}
    routed_q = sum(tiers["weak" if i in cheap else "strong"].quality(prompt_of[i]) for i in ids) / len(ids)
    strong_cost = sum(cost[(i, "strong")] for i in ids)
    routed_cost = sum(cost[(i, "weak" if i in cheap else "strong")] for i in ids)
    print(f"Routing half of these {len(ids)} prompts to the weak tier by those scores: {routed_cost:.6f} USD instead "
          f"of {strong_cost:.6f} ({1 - routed_cost / strong_cost:.0%} less), mean simulated quality {routed_q:.3f} "
          f"against {q['strong']:.3f} all-strong, {(q['strong'] + q['weak']) / 2:.3f} for a random half and "
          f"{q['weak']:.3f} all-weak.\nAll figures come from simulated models and a simulated judge; real traffic "
          "is harder to tell apart (README: labels from your own traffic).")


def _report(rows: list[dict], kind_of: dict[str, str], records, db: str) -> None:
    verdicts = Counter(r["verdict"] for r in rows)
    print(f"\n{len(rows)} labels: " + ", ".join(f"{v} {verdicts[v]}" for v in
                                                ("strong", "weak", "tie", "split", "unparsed", "error")))
    print(f"Each pair was judged twice with the answers swapped: {verdicts['split']} pairs got opposite verdicts "
          "(the simulated judge favours the first answer 20% of the time) and count as ties (0.5), never as a "
          f"winner; {verdicts['unparsed']} unreadable verdicts are recorded as such, never guessed.")
    print(f"\n{'kind of prompt':<16}{'labels':>8}{'strong wins':>13}   true quality strong / weak (simulation)")
    for kind, (_, _, _, strong, weak) in KINDS.items():
        wins = [r["strong_wins"] for r in rows if kind_of[r["request_id"]] == kind and r["strong_wins"] is not None]
        mean = f"{sum(wins) / len(wins):.2f}" if wins else "-"
        print(f"{kind:<16}{len(wins):>8}{mean:>13}   {strong:.2f} / {weak:.2f}")
    spend: dict[str, Decimal] = {}
    for r in records:
        spend[r.endpoint] = spend.get(r.endpoint, Decimal(0)) + r.cost
    labelling = spend.get("shadow", Decimal(0)) + spend.get("judge", Decimal(0))
    print(f"\nTraffic: {spend.get('chat', Decimal(0)):.6f} USD. Labelling: {labelling:.6f} USD (other tier "
          f"{spend.get('shadow', Decimal(0)):.6f}, judge {spend.get('judge', Decimal(0)):.6f}), its own ledger rows, "
          "in no user's budget, within the route's daily budget of 1.00 USD.")
    print(f"The labels, as lines for training: hedgeway router labels export --db {db} --route auto")
