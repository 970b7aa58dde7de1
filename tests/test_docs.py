"""ARCHITECTURE.md names every module and every rule, so it cannot fall behind unseen."""

import re

from conftest import ROOT

PAGE = (ROOT / "ARCHITECTURE.md").read_text()


def test_the_module_map_names_every_module_of_the_package():
    package = ROOT / "src" / "clpipe"
    modules = {p.stem for p in package.rglob("*.py") if p.stem != "__init__"}
    missing = sorted(m for m in modules if f"`{m}`" not in PAGE)
    assert not missing, f"ARCHITECTURE.md's module map lacks {missing}"


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
