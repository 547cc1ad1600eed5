"""Build vs buy. `costmodel` (pure Decimal cost, capacity and break-even functions), `scoring` (7 factors →
tier, constraints, flowchart, checklist), `catalog` (GPU options, self-host profiles, API price cards),
`scenario` (the validated planner input), `whatif` (re-pricing logged requests under another policy),
`planner` (ledger records → the plan) and `report` (the one-paragraph verdict and the HTML report).

Entry points: `planner.build_plan(scenario.build_scenario(raw), records=None)` (the JSON-ready plan),
`planner.verdict(records)` (one paragraph), `report.render_html(plan)`; the CLI is `hedgeway plan`.
"""
