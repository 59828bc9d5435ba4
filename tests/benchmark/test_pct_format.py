"""One % formatter (`hf_genrec.benchmark.formatting.format_pct`) for the report's tables and the claim verdict: a
change below 0.1% keeps two significant digits in fixed notation in both (the verdict printed `+4.0e-04`, the
tables `+0.0`), and both print the same change the same way."""

import pytest
from test_verdict import _inputs  # tests/benchmark is on sys.path (rootdir-relative imports)

from hf_genrec.benchmark.report import METRICS, ablation_markdown
from hf_genrec.benchmark.verdict import claim_verdicts, claims_markdown

TINY = (0.0002, 0.0006)  # a % interval off 0 but far below 0.1%: its midpoint, the % change, is 0.0004


def _verdict_cell(results, versus) -> str:
    """The verdict's `% [interval]` cell for CQL vs RW-BC, HR@10 on `all`."""
    text = "\n".join(claims_markdown(claim_verdicts(results, versus)))
    (line,) = [line for line in text.splitlines() if line.startswith("| cql vs rwbc | `all` | HR@10 |")]
    return line.split(" | ")[3]


def test_verdict_prints_a_tiny_change_in_fixed_notation():
    results, versus = _inputs(vs_rwbc={("cql", "all", "hr@10"): TINY})
    text = "\n".join(claims_markdown(claim_verdicts(results, versus)))
    assert "e-" not in text
    cell = _verdict_cell(results, versus)
    low, high = (float(bound) for bound in cell.split("[")[1].rstrip("]").split(", "))
    assert (low, high) == TINY and float(cell.split("%")[0]) == pytest.approx(sum(TINY) / 2)
    assert cell == "+0.00040% [+0.00020, +0.00060]"


def test_report_table_prints_the_change_as_the_verdict_does():
    results, versus = _inputs(vs_rwbc={("cql", "all", "hr@10"): TINY})
    # CQL's HR@10 entry on `all` as an ablation row's every metric (`ablation_markdown` tables such rows alone).
    entry = results["methods"]["cql"]["subsets"]["all"]["metrics"]["hr@10"]
    ablation = {"kind": "ablation", "method": "cql", "subsets": {"all": {"metrics": dict.fromkeys(METRICS, entry)}}}
    table = "\n".join(ablation_markdown({"methods": {"cql": ablation}, "subsets": ["all"]}))
    assert _verdict_cell(results, versus) in table
    assert "[+0.0, +0.0]" not in table
