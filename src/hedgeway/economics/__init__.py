"""Build vs buy: the cost model (`costmodel`), the 7-factor score (`scoring`), catalogues of GPUs and
self-host profiles (`catalog`), the planner from ledger traffic (`planner`) and the HTML report (`report`).

Entry points: `planner.build_plan(scenario, records=None)` (the JSON-ready plan), `planner.verdict(records)`
(one paragraph), `report.render_html(plan, scenario)`; the CLI is `hedgeway plan` (`hedgeway.cli.plan`).
"""
