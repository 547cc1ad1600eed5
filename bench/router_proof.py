"""Held-out check of `hedgeway router train --labels` on public sets it never saw (a benchmark, not a test).

    python bench/router_proof.py [--data ../shared/data/router] [--work /tmp/router-proof] [--sets a,b]
                                 [--cv 5] [--shuffles 3]

Builds label files (strong = GPT-4-1106, weak = Mixtral-8x7B) from the shared data, outside the repo:
  * mt_bench   — assistant-style: the 72 uncontaminated MT-Bench questions × 2 turns; quality = GPT-4's
                 1–10 judgment of each model's answer (turn 2 sees both user turns);
  * arc, mbpp, winogrande — RouterBench (0-shot, train + test splits): correctness 0/1;
  * gsm8k      — RouteLLM's GSM8K responses: correctness 0/1;
  * mmlu1000   — 1,000 MMLU prompts drawn at random (seed 0): correctness 0/1 (the timing run);
plus, for each, `--shuffles` copies whose (strong, weak) pairs are shuffled across prompts (these carry
each prompt's MiniLM vector, computed once here exactly as the CLI would, so it is not recomputed per
copy; the real file carries prompts only and is timed end to end). Each file goes through the CLI; the
out-of-fold scores it writes are scored here again with RouteLLM's protocol (`evaluate.evaluate_scores`),
independently of the CLI's report.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hedgeway.routing.evaluate import evaluate_scores  # noqa: E402
from hedgeway.routing.labelled import embed_text, minilm_embed  # noqa: E402

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"


def _bad(path: Path) -> set[str]:
    return {json.loads(line)["eval_prompt"].strip() for line in path.read_text().splitlines() if line.strip()}


def mt_bench(root: Path) -> list[dict]:
    r = root / "routellm/mt_bench"
    bad = _bad(r / "contaminated_prompts.jsonl")
    score = {}
    for line in (r / "judgements.jsonl").read_text().splitlines():
        j = json.loads(line)
        score[(j["question_id"], j["model"], j["turn"])] = float(j["score"])
    rows = []
    for line in (r / "question.jsonl").read_text().splitlines():
        q = json.loads(line)
        if q["turns"][0].strip() in bad:
            continue
        for turn in (1, 2):
            msgs = [{"role": "user", "content": t} for t in q["turns"][:turn]]
            rows.append({"id": f"{q['question_id']}/{turn}", "messages": msgs,
                         "strong": score[(q["question_id"], STRONG, turn)],
                         "weak": score[(q["question_id"], WEAK, turn)]})
    return rows


def routerbench(root: Path, name: str) -> list[dict]:
    rows = []
    for split in ("train", "test"):
        for r in csv.DictReader((root / f"routerbench/routerbench_zs/{name}_{split}.csv").open()):
            s, w = r["gpt-4-1106-preview"], r["mistralai/mixtral-8x7b-chat"]
            if s in ("", "nan") or w in ("", "nan"):
                continue
            rows.append({"id": f"{name}/{r['sample_id']}", "prompt": r["prompt"], "strong": float(s), "weak": float(w)})
    return rows


def gsm8k(root: Path) -> list[dict]:
    bad = _bad(root / "routellm/gsm8k/contaminated_prompts.jsonl")
    return [{"id": f"gsm8k/{i}", "prompt": r["prompt"], "strong": float(r[STRONG] == "True"),
             "weak": float(r[WEAK] == "True")}
            for i, r in enumerate(csv.DictReader((root / "routellm/gsm8k/gsm8k_responses.csv").open()))
            if r["prompt"].strip() not in bad]


def mmlu(root: Path, n: int = 1000) -> list[dict]:
    rows = []
    for f in sorted((root / "routellm/mmlu_responses").glob("mmlu_*.csv")):
        rows += [{"id": f"{f.stem}/{i}", "prompt": r["prompt"], "strong": float(r[STRONG] == "True"),
                  "weak": float(r[WEAK] == "True")} for i, r in enumerate(csv.DictReader(f.open()))]
    pick = np.random.default_rng(0).choice(len(rows), n, replace=False)
    return [rows[i] for i in pick]


SETS = {"mt_bench": mt_bench, "arc": lambda r: routerbench(r, "arc_challenge"),
        "mbpp": lambda r: routerbench(r, "mbpp"), "winogrande": lambda r: routerbench(r, "winograde"),
        "gsm8k": gsm8k, "mmlu1000": mmlu}


def shuffled(rows: list[dict], seed: int) -> list[dict]:
    perm = np.random.default_rng(seed).permutation(len(rows))
    return [{**r, "strong": rows[j]["strong"], "weak": rows[j]["weak"]} for r, j in zip(rows, perm)]


def run(path: Path, work: Path, cv: int) -> dict:
    oof, model = work / f"{path.stem}.oof.jsonl", work / f"{path.stem}.npz"
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-m", "hedgeway", "router", "train", "--labels", str(path), "--cv", str(cv),
                          "--oof-output", str(oof), "--output", str(model), "--json"],
                         check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = now.ru_utime + now.ru_stime - cpu.ru_utime - cpu.ru_stime
    report = json.loads(out.stdout)
    labels = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    scores = [json.loads(line) for line in oof.read_text().splitlines()]
    mine = evaluate_scores([s["score"] for s in scores], [labels[s["id"]]["strong"] for s in scores],
                           [labels[s["id"]]["weak"] for s in scores])
    return {"file": path.name, "n": report["n"], "apgr": report["apgr"], "ci": report["ci"],
            "band": report["random_band"], "proven": report["proven"], "rescored_apgr": mine["apgr"],
            "curve": report["learning_curve"], "seconds": round(seconds, 1), "cpu_s": round(cpu_s, 1),
            "train_s": report["seconds"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/router"))
    ap.add_argument("--work", default="/tmp/router-proof")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--cv", type=int, default=5)
    ap.add_argument("--shuffles", type=int, default=3)
    args = ap.parse_args()
    root, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    for name in args.sets.split(","):
        rows = SETS[name](root)
        files = [(name, rows)]
        if args.shuffles:
            vecs = minilm_embed([embed_text(r.get("prompt", r.get("messages"))) for r in rows])
            embedded = [{**r, "embedding": [round(float(x), 6) for x in v]} for r, v in zip(rows, vecs)]
            files += [(f"{name}-shuffled{k}", shuffled(embedded, k)) for k in range(args.shuffles)]
        for stem, data in files:
            path = work / f"{stem}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in data))
            r = run(path, work, args.cv)
            curve = " ".join(f"{p['n']}:{p['apgr']:.3f}" for p in r["curve"])
            print(f"{r['file']:<26} n={r['n']:>5} APGR {r['apgr']:.3f} (rescored {r['rescored_apgr']:.3f}) "
                  f"CI {r['ci'][0]:.3f}–{r['ci'][1]:.3f} band {r['band'][0]:.3f}–{r['band'][1]:.3f} "
                  f"proven={r['proven']} {r['seconds']} s wall, {r['cpu_s']} s CPU "
                  f"({r['train_s']} s in train_from_labels) | {curve}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
