"""ARCHITECTURE.md names every rule, so it cannot fall behind unseen (its module map:
tests/unit/test_layers.py)."""

import re

from conftest import ROOT

PAGE = (ROOT / "ARCHITECTURE.md").read_text()


def test_the_rule_table_names_every_rule_and_its_script():
    rules = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t].*\n|\n)*)", smk.read_text(), re.M):
            script = re.search(r'"\.\./\.\./(src/\w+\.py)"', body)
            rules[name] = (smk.name, script.group(1) if script else None)
    assert len(rules) >= 12
    for name, (smk, script) in rules.items():
        row = next((line for line in PAGE.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row, f"ARCHITECTURE.md's rule table lacks {name}"
        assert f"`{smk}`" in row and f"`{script}`" in row, (name, row)
