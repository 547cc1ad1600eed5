"""Router quality benchmark (not a test): RouteLLM protocol + RouterBench cost-quality curve.

    python bench/router_eval.py [--data ../shared/data/router] [--out bench/results/router]
                                [--write-artefact src/hedgeway/data/router/learned-v1.npz]

1. RouteLLM data (GPT-4-1106 = strong, Mixtral-8x7B = weak): MMLU (57 subjects), GSM8K, MT-Bench; the
   contaminated prompts RouteLLM lists are dropped. Our own held-out split: a prompt is `test` when
   crc32(prompt) % 100 < 25 (MT-Bench: by question id, both turns together), else `train`. The split is
   exported as jsonl (to --export, outside the repo) in the format `hedgeway router train/eval` reads.
2. The learned router is trained on the train split only (all three benchmarks pooled) and, with
   --write-artefact, saved as the shipped default. Every router is evaluated on the test split, with a
   95% bootstrap interval. The test split is small (GSM8K ~330 prompts, MT-Bench ~18 questions), so
   every benchmark is also scored by 5-fold cross-validation over all its prompts ("(cv)" rows).
   MMLU gets one more row, "subject": the ceiling of a router that knows only the prompt's subject.
3. RouterBench (ARC-Challenge, MBPP, Winogrande test splits; 11 models with USD cost per query):
   the shipped router (zero-shot: trained on RouteLLM data only) picks between a cheap and a premium
   model at 11 thresholds; its (cost, accuracy) curve is compared with every single model and the
   oracle (the cheapest model that answers correctly, when one does).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hedgeway.routing import evaluate as ev  # noqa: E402
from hedgeway.routing.baselines import RandomRouter  # noqa: E402
from hedgeway.routing.features import prompt_of  # noqa: E402
from hedgeway.routing.heuristic import HeuristicRouter  # noqa: E402
from hedgeway.routing.learned import LearnedModel, train  # noqa: E402

STRONG, WEAK = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
csv.field_size_limit(1 << 30)


def _test(key: str) -> bool:
    return zlib.crc32(key.encode()) % 100 < 25


def _contaminated(path: Path) -> set[str]:
    return {json.loads(line)["eval_prompt"].strip() for line in path.read_text().splitlines() if line.strip()}


def load_routellm(root: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    bad = _contaminated(root / "mmlu_responses/contaminated_prompts.jsonl")
    rows = []
    for f in sorted((root / "mmlu_responses").glob("mmlu_*.csv")):
        for r in csv.DictReader(f.open()):
            if r["prompt"].strip() in bad:
                continue
            rows.append({"id": f"{f.stem}/{len(rows)}", "prompt": r["prompt"], "strong": float(r[STRONG] == "True"),
                         "weak": float(r[WEAK] == "True"), "split": "test" if _test(r["prompt"]) else "train"})
    out["mmlu"] = rows
    bad = _contaminated(root / "gsm8k/contaminated_prompts.jsonl")
    rows = []
    for i, r in enumerate(csv.DictReader((root / "gsm8k/gsm8k_responses.csv").open())):
        if r["prompt"].strip() in bad:
            continue
        rows.append({"id": f"gsm8k/{i}", "prompt": r["prompt"], "strong": float(r[STRONG] == "True"),
                     "weak": float(r[WEAK] == "True"), "split": "test" if _test(r["prompt"]) else "train"})
    out["gsm8k"] = rows
    bad = _contaminated(root / "mt_bench/contaminated_prompts.jsonl")
    scores: dict[tuple[int, str], list[float]] = {}
    for line in (root / "mt_bench/judgements.jsonl").read_text().splitlines():
        j = json.loads(line)
        scores.setdefault((j["question_id"], j["model"]), []).append(float(j["score"]))
    rows = []
    for line in (root / "mt_bench/question.jsonl").read_text().splitlines():
        q = json.loads(line)
        if q["turns"][0].strip() in bad:
            continue
        msgs = [{"role": "user", "content": t} for t in q["turns"]]
        rows.append({"id": q["question_id"], "prompt": msgs, "category": q["category"],
                     "strong": float(np.mean(scores[(q["question_id"], STRONG)])),
                     "weak": float(np.mean(scores[(q["question_id"], WEAK)])),
                     "split": "test" if _test(str(q["question_id"])) else "train"})
    out["mt_bench"] = rows
    return out


def export(data: dict[str, list[dict]], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in data.items():
        with (folder / f"{name}.jsonl").open("w") as f:
            for r in rows:
                f.write(json.dumps({k: r[k] for k in ("id", "prompt", "strong", "weak", "split")}) + "\n")


def _fit(rows_by_bench: dict[str, list[dict]], **kw) -> LearnedModel:
    prompts, s, w = [], [], []
    for rows in rows_by_bench.values():
        if not rows:
            continue
        q = np.array([[r["strong"], r["weak"]] for r in rows])
        q = (q - q.min()) / ((q.max() - q.min()) or 1)
        prompts += [prompt_of(r["prompt"]) for r in rows]
        s += list(q[:, 0])
        w += list(q[:, 1])
    return train(prompts, s, w, **kw)


def _items(rows):
    return [ev.Item(r["id"], r["prompt"], r["strong"], r["weak"]) for r in rows]


def routellm(data, model: LearnedModel) -> dict:
    h, rnd = HeuristicRouter(), RandomRouter({"seed": 0})
    scorers = {"random": lambda p: rnd.score(prompt_of(p)), "heuristic": lambda p: h.score(prompt_of(p)),
               "learned": lambda p: model.score(prompt_of(p))}
    results = {}
    for name, rows in data.items():
        test = _items([r for r in rows if r["split"] == "test"])
        results[name] = {r: ev.evaluate(fn, test) for r, fn in scorers.items()}
    return results


def fold_ids(data, folds: int = 5) -> dict[str, np.ndarray]:
    """Each prompt's cross-validation fold: crc32(id) % folds (an MT-Bench question keeps both turns)."""
    return {k: np.array([zlib.crc32(str(r["id"]).encode()) % folds for r in rows]) for k, rows in data.items()}


def out_of_fold(data, folds: int = 5) -> dict[str, np.ndarray]:
    """Learned-router scores of every prompt by a model that never saw it: each fold's model is trained
    on the other folds of all three benchmarks. The shipped model is not used here."""
    fold = fold_ids(data, folds)
    oof = {k: np.zeros(len(rows)) for k, rows in data.items()}
    for f in range(folds):
        m = _fit({k: [r for r, g in zip(rows, fold[k]) if g != f] for k, rows in data.items()})
        for k, rows in data.items():
            for i in np.flatnonzero(fold[k] == f):
                oof[k][i] = m.score(prompt_of(rows[i]["prompt"]))
    return oof


def cross_validated(data) -> dict:
    """Learned (out of fold), heuristic and random on all prompts of each benchmark: more data than the
    25% test split, so narrower intervals."""
    oof = out_of_fold(data)
    h, rnd = HeuristicRouter(), RandomRouter({"seed": 0})
    out = {}
    for k, rows in data.items():
        s, w = [r["strong"] for r in rows], [r["weak"] for r in rows]
        out[f"{k} (cv)"] = {
            "learned": ev.evaluate_scores(oof[k], s, w),
            "heuristic": ev.evaluate_scores([h.score(prompt_of(r["prompt"])) for r in rows], s, w),
            "random": ev.evaluate_scores([rnd.score(prompt_of(r["prompt"])) for r in rows], s, w)}
    return out


def subject_ceiling(rows: list[dict]) -> dict:
    """MMLU: a router that knows each prompt's subject (57 of them) and nothing else. Its score is the
    subject's mean gain (strong − weak) on the train split; evaluated on the test split. A router that
    reads only the prompt mostly learns the subject, so this bounds what such a router reaches on MMLU."""
    gain: dict[str, list[float]] = {}
    for r in rows:
        if r["split"] == "train":
            gain.setdefault(r["id"].split("/")[0], []).append(r["strong"] - r["weak"])
    test = [r for r in rows if r["split"] == "test"]
    return ev.evaluate_scores([float(np.mean(gain[r["id"].split("/")[0]])) for r in test],
                              [r["strong"] for r in test], [r["weak"] for r in test])


def routerbench(root: Path, model: LearnedModel, cheap: str, premium: str) -> dict:
    rows = []
    for name in ("arc_challenge_test", "mbpp_test", "winograde_test"):
        rows += list(csv.DictReader((root / f"routerbench_zs/{name}.csv").open()))
    models = [k for k in rows[0] if k and "|" not in k and k not in ("sample_id", "prompt", "eval_name",
                                                                      "oracle_model_to_route_to")]
    ok = lambda v: v not in ("", "nan", "NaN")  # noqa: E731
    rows = [r for r in rows if all(ok(r[m]) and ok(r[f"{m}|total_cost"]) for m in models)]
    acc = {m: np.array([float(r[m]) for r in rows]) for m in models}
    cost = {m: np.array([float(r[f"{m}|total_cost"]) for r in rows]) for m in models}
    singles = {m: (float(cost[m].sum()), float(acc[m].mean())) for m in models}
    by_price = sorted(models, key=lambda m: singles[m][0])
    oracle_cost, oracle_acc = 0.0, 0.0
    for i in range(len(rows)):
        right = [m for m in by_price if acc[m][i] >= 1]
        pick = right[0] if right else by_price[0]
        oracle_cost += cost[pick][i]
        oracle_acc += acc[pick][i]
    scores = {"learned": np.array([model.score(prompt_of(r["prompt"])) for r in rows]),
              "heuristic": np.array([HeuristicRouter().score(prompt_of(r["prompt"])) for r in rows]),
              "random": np.random.default_rng(0).random(len(rows))}
    curves = {}
    for name, sc in scores.items():
        order = np.argsort(-sc, kind="stable")
        pts = []
        for frac in np.linspace(0, 1, 11):
            strong = np.zeros(len(rows), bool)
            strong[order[:int(round(frac * len(rows)))]] = True
            pts.append((round(float(np.where(strong, cost[premium], cost[cheap]).sum()), 4),
                        round(float(np.where(strong, acc[premium], acc[cheap]).mean()), 4)))
        curves[name] = pts
    return {"n": len(rows), "cheap": cheap, "premium": premium, "singles": singles,
            "oracle": (round(oracle_cost, 4), round(oracle_acc / len(rows), 4)), "curves": curves}


def overhead(sharegpt: Path, n: int = 1000) -> dict:
    """Planner.plan() per request (the whole decision: prompt features, score, tier, health filter) on
    real ShareGPT first turns, for the heuristic and the learned router: p50 / p99 / max in ms."""
    from decimal import Decimal

    from hedgeway.routing import Planner
    from hedgeway.routing.config import RouteIn, RouterIn
    from hedgeway.types import Deployment, PriceCard

    convs = json.loads(sharegpt.read_text())
    prompts = [c["conversations"][0]["value"] for c in convs if c.get("conversations")][:n]
    models = {m: (Deployment(id=m, model_name=m, provider="openai", model=m,
                             price=PriceCard(Decimal(p), Decimal(p))),) for m, p in (("s", "0.1"), ("m", "1"), ("l", "10"))}
    out = {"prompts": len(prompts), "mean_chars": round(float(np.mean([len(p) for p in prompts])))}
    for router in ("heuristic", "learned"):
        planner = Planner(models, {}, "least-in-flight", RouterIn(routes=[RouteIn(
            name="auto", router=router, tiers={"simple": "s", "medium": "m", "complex": "l"})]))
        bodies = [{"model": "auto", "messages": [{"role": "user", "content": p}]} for p in prompts]
        for b in bodies[:50]:
            planner.plan("auto", b)
        planner.stats.tiers.clear()
        times, best = [], []  # one pass as measured; and per prompt the best of 5 (CPU cost, less scheduler noise)
        for b in bodies:
            runs = []
            for _ in range(5):
                t = time.perf_counter()
                planner.plan("auto", b)
                runs.append((time.perf_counter() - t) * 1000)
            times.append(runs[0])
            best.append(min(runs))
        out[router] = {"p50_ms": round(float(np.percentile(times, 50)), 3),
                       "p99_ms": round(float(np.percentile(times, 99)), 3), "max_ms": round(max(times), 3),
                       "best_of_5_p99_ms": round(float(np.percentile(best, 99)), 3),
                       "best_of_5_max_ms": round(max(best), 3),
                       "tiers": {k[1]: v // 5 for k, v in planner.stats.tiers.items()}}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/router"))
    ap.add_argument("--out", default="bench/results/router")
    ap.add_argument("--export", default="/tmp/hedgeway-router-data", help="split data as jsonl (outside the repo)")
    ap.add_argument("--write-artefact", default=None)
    ap.add_argument("--cheap", default="mistralai/mixtral-8x7b-chat")
    ap.add_argument("--premium", default="gpt-4-1106-preview")
    args = ap.parse_args()
    root, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ov = overhead(root.parent / "workload/sharegpt/ShareGPT_V3_filtered_1000.json")
    print(f"decision overhead on {ov['prompts']} ShareGPT prompts (mean {ov['mean_chars']} chars): "
          + "; ".join(f"{r} p50 {ov[r]['p50_ms']} ms, p99 {ov[r]['p99_ms']} ms, max {ov[r]['max_ms']} ms "
                      f"(best of 5: p99 {ov[r]['best_of_5_p99_ms']}, max {ov[r]['best_of_5_max_ms']} ms), "
                      f"tiers {ov[r]['tiers']}" for r in ("heuristic", "learned")))
    data = load_routellm(root / "routellm")
    export(data, Path(args.export))
    started = time.time()
    model = _fit({k: [r for r in v if r["split"] == "train"] for k, v in data.items()})
    model.meta.update({"version": "learned-v1", "trained_on": "RouteLLM mmlu+gsm8k+mt_bench train split "
                       "(crc32(prompt) % 100 >= 25; contaminated prompts removed)",
                       "strong": STRONG, "weak": WEAK})
    print(f"trained in {time.time() - started:.1f} s on {model.meta['n_train']} prompts")
    if args.write_artefact:
        model.save(args.write_artefact)
        print(f"artefact: {args.write_artefact} ({Path(args.write_artefact).stat().st_size} bytes)")
    results = routellm(data, model)
    results["mmlu"]["subject"] = subject_ceiling(data["mmlu"])
    results.update(cross_validated(data))
    print(ev.table(results))
    ev.chart({k: v for k, v in results.items() if "(cv)" not in k}, out / "routellm_curves.png")
    rb = routerbench(root / "routerbench", model, args.cheap, args.premium)
    print(f"\nRouterBench test splits (n={rb['n']}), total USD over the set / accuracy:")
    for m, (c, a) in sorted(rb["singles"].items(), key=lambda kv: kv[1][0]):
        print(f"  {m:<40} ${c:8.4f}  {a:.3f}")
    print(f"  {'oracle':<40} ${rb['oracle'][0]:8.4f}  {rb['oracle'][1]:.3f}")
    for name, pts in rb["curves"].items():
        print(f"  router {name:<10} " + "  ".join(f"${c:.3f}/{a:.3f}" for c, a in pts))
    _rb_chart(rb, out / "routerbench_curve.png")
    (out / "results.json").write_text(json.dumps({"routellm": results, "routerbench": rb, "overhead": ov}, indent=1))
    return 0


def _rb_chart(rb, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 5))
    for m, (c, a) in rb["singles"].items():
        ax.scatter(c, a, s=15)
        ax.annotate(m.split("/")[-1], (c, a), fontsize=6)
    ax.scatter(*rb["oracle"], marker="*", s=80, c="k", label="oracle")
    for name, pts in rb["curves"].items():
        ax.plot(*zip(*pts), marker=".", label=f"router: {name}")
    ax.set_xscale("log")
    ax.set_xlabel("total USD over the test set (log)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"RouterBench: {rb['cheap'].split('/')[-1]} vs {rb['premium']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
