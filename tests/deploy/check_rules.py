#!/usr/bin/env python3
"""Consistency checks of the Prometheus rules that promtool cannot make.

Usage: check_rules.py REPO_ROOT EXPECTED_RULE_COUNT

For deploy/prometheus/rules/*.yml it checks that
  - every metric name an expression uses is one our code registers (found from the `.Name(...)`
    calls of prometheus-cpp builders in common/ and services/), `up`, or a recording rule's name;
  - every alert has `for:`, labels.severity page or ticket, annotations.summary, and a description
    that names a runbook section ("Runbook: deploy/README.md#anchor") which deploy/README.md has;
  - every alert has a promtool test in deploy/prometheus/tests/ that expects it firing and one
    that expects it silent;
  - every rules file is listed in prometheus.yml's rule_files.
EXPECTED_RULE_COUNT is the total promtool reported; the reader below must find as many rules, so
a rule it cannot read fails the check rather than escaping it.

Only the standard library: the YAML is read line by line, which the rules files' plain layout
(`- alert:`/`- record:` items with `expr:`, `for:`, `labels:`, `annotations:` keys, block scalars
for long text) allows. Exits 0 when everything holds, else 1 with one line per problem.
"""

import glob
import os
import re
import sys

# Metric names Prometheus itself adds to every scrape that rules may use.
SCRAPE_METRICS = {"up"}

# Suffixes prometheus-cpp exposes for each builder's family name.
SUFFIXES = {
    "Counter": [""],
    "Gauge": [""],
    "Info": [""],
    "Histogram": ["_bucket", "_sum", "_count"],
    "Summary": ["", "_sum", "_count"],
}

# Identifiers in names built at run time, e.g. "grpc_" + side + "_started_total", and the values
# they take (common/grpc_metrics.cc builds one set of families per side).
NAME_VARIABLES = {"side": ["server", "client"]}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
    "group_right", "inf", "nan",
}

problems = []


def problem(text):
    problems.append(text)


# --- YAML, line by line -------------------------------------------------------------------------

def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def scalar(lines, i):
    """The value of the `key: value` at lines[i]: inline (quotes removed) or a block scalar."""
    line = lines[i]
    value = line.split(":", 1)[1].strip()
    if value[:1] in ("|", ">"):
        key_indent = indent_of(line)
        parts = []
        for follow in lines[i + 1:]:
            if follow.strip() and indent_of(follow) <= key_indent:
                break
            parts.append(follow.strip())
        sep = "\n" if value.startswith("|") else " "
        return sep.join(p for p in parts if p)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


def read_rules(path):
    """Each rule as a dict: kind (alert/record), name, expr, for, labels, annotations."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    rules = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)- (alert|record):\s*(\S+)\s*$", lines[i])
        if not m:
            i += 1
            continue
        item_indent = len(m.group(1))
        rule = {"kind": m.group(2), "name": m.group(3), "labels": {}, "annotations": {},
                "file": os.path.basename(path)}
        key_indent = item_indent + 2
        section = None
        j = i + 1
        while j < len(lines):
            line = lines[j]
            if line.strip() and not line.lstrip().startswith("#"):
                ind = indent_of(line)
                if ind <= item_indent:
                    break
                km = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*):", line)
                if km and ind == key_indent:
                    key = km.group(1)
                    section = key if key in ("labels", "annotations") else None
                    if section is None:
                        rule[key] = scalar(lines, j)
                elif km and section and ind == key_indent + 2:
                    rule[section][km.group(1)] = scalar(lines, j)
            j += 1
        rules.append(rule)
        i = j
    return rules


# --- PromQL -------------------------------------------------------------------------------------

def metric_names(expr):
    """Metric names an expression selects: identifiers that are not functions, keywords, label
    names or parts of strings, numbers and durations."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![A-Za-z0-9_.:])[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or aggregation
        if word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


# --- what our code registers --------------------------------------------------------------------

def registered_names(root):
    sources = []
    for pattern in ("common/**/*.cc", "services/**/*.cc"):
        sources += glob.glob(os.path.join(root, pattern), recursive=True)
    sources = [s for s in sources if not s.endswith("_test.cc") and "/testing/" not in s]
    names = set()
    for path in sorted(sources):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for m in re.finditer(r"\.Name\(\s*((?:\"[^\"]*\"|[A-Za-z_]\w*)"
                             r"(?:\s*\+\s*(?:\"[^\"]*\"|[A-Za-z_]\w*))*)\s*\)", text):
            # The family type: the nearest builder call before this .Name(.
            builders = re.findall(r"Build(Counter|Gauge|Histogram|Summary|Info)\s*\(\s*\)",
                                  text[max(0, m.start() - 300):m.start()])
            kind = builders[-1] if builders else None
            bases = [""]
            for part in re.split(r"\s*\+\s*", m.group(1).strip()):
                if part.startswith('"'):
                    bases = [b + part[1:-1] for b in bases]
                elif part in NAME_VARIABLES:
                    bases = [b + v for b in bases for v in NAME_VARIABLES[part]]
                else:
                    print(f"note: {os.path.relpath(path, root)}: cannot resolve metric name "
                          f"part {part!r}; teach NAME_VARIABLES in {__file__}", file=sys.stderr)
                    bases = []
                    break
            suffixes = SUFFIXES.get(kind, sorted({s for v in SUFFIXES.values() for s in v}))
            names.update(b + s for b in bases for s in suffixes)
    return names


# --- the runbook and the tests ------------------------------------------------------------------

def runbook_anchors(path):
    """GitHub's anchors of the Markdown headings in `path` (lower case, punctuation dropped,
    spaces to dashes)."""
    anchors = set()
    in_code = False
    if not os.path.exists(path):
        problem(f"{path} is missing: it is the runbook the alerts point to")
        return anchors
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m and not in_code:
                text = re.sub(r"[^\w\- ]", "", m.group(1).lower())
                anchors.add(text.replace(" ", "-"))
    return anchors


def tested_alerts(paths):
    """alertname -> {"firing", "silent"}: which kinds of expectation the tests have for it."""
    seen = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^(\s*)- (eval_time|alertname|exp_alerts):", line)
            if not m:
                continue
            item_indent = len(m.group(1))
            item = [line.replace("- ", "  ", 1)]
            for follow in lines[i + 1:]:
                if follow.strip() and indent_of(follow) <= item_indent:
                    break
                item.append(follow)
            name = expect = None
            for entry in item:
                if indent_of(entry) != item_indent + 2:
                    continue
                am = re.match(r"^\s*alertname:\s*(\S+)", entry)
                if am:
                    name = am.group(1).strip("'\"")
                em = re.match(r"^\s*exp_alerts:\s*(.*?)\s*$", entry)
                if em:
                    expect = "silent" if em.group(1) == "[]" else "firing"
            if name and expect:
                seen.setdefault(name, set()).add(expect)
    return seen


def listed_rule_files(prometheus_yml):
    listed = []
    with open(prometheus_yml, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^rule_files:\s*$", line):
            for follow in lines[i + 1:]:
                m = re.match(r"^\s+-\s+(\S+)\s*$", follow)
                if not m:
                    if follow.strip() and not follow.lstrip().startswith("#"):
                        break
                    continue
                listed.append(m.group(1).strip("'\""))
    return listed


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, expected_count = sys.argv[1], int(sys.argv[2])
    prom = os.path.join(root, "deploy", "prometheus")
    rule_files = sorted(glob.glob(os.path.join(prom, "rules", "*.yml")))
    rules = [r for path in rule_files for r in read_rules(path)]
    if len(rules) != expected_count:
        problem(f"read {len(rules)} rules but promtool found {expected_count}: a rule is "
                f"written in a form {os.path.basename(__file__)} cannot read")

    known = registered_names(root)
    if "grpc_server_handled_total" not in known or "dj_db_errors_total" not in known:
        problem("found none of our metric names in common/*.cc: has the registration moved?")
    recorded = {r["name"] for r in rules if r["kind"] == "record"}
    known |= SCRAPE_METRICS | recorded
    for r in rules:
        expr = r.get("expr", "")
        used = metric_names(expr)
        if not used:
            problem(f"{r['file']}: {r['name']}: no metric name found in its expr {expr!r}")
        for name in sorted(used - known):
            problem(f"{r['file']}: {r['name']}: metric {name} is registered nowhere in "
                    f"common/ or services/ (nor is it up or a recording rule)")

    anchors = runbook_anchors(os.path.join(root, "deploy", "README.md"))
    tests = tested_alerts(sorted(glob.glob(os.path.join(prom, "tests", "*.yml"))))
    for r in (r for r in rules if r["kind"] == "alert"):
        where = f"{r['file']}: alert {r['name']}"
        if not r.get("for"):
            problem(f"{where}: no `for:` (one bad evaluation would fire it)")
        if r["labels"].get("severity") not in ("page", "ticket"):
            problem(f"{where}: labels.severity must be page or ticket, "
                    f"not {r['labels'].get('severity')!r}")
        if not r["annotations"].get("summary"):
            problem(f"{where}: no annotations.summary")
        description = r["annotations"].get("description", "")
        m = re.search(r"Runbook: deploy/README\.md#([\w-]+)", description)
        if not m:
            problem(f"{where}: annotations.description names no runbook section "
                    f"(Runbook: deploy/README.md#anchor)")
        elif m.group(1) not in anchors:
            problem(f"{where}: deploy/README.md has no section #{m.group(1)}")
        for expect in ("firing", "silent"):
            if expect not in tests.get(r["name"], set()):
                problem(f"{where}: no test in deploy/prometheus/tests/ expects it {expect}")

    listed = listed_rule_files(os.path.join(prom, "prometheus.yml"))
    for path in rule_files:
        if os.path.relpath(path, prom) not in listed:
            problem(f"prometheus.yml's rule_files does not list {os.path.relpath(path, prom)}: "
                    f"its rules are tested but never loaded")

    for p in problems:
        print(f"FAILED: {p}", file=sys.stderr)
    if problems:
        return 1
    alerts = sum(r["kind"] == "alert" for r in rules)
    print(f"ok: {len(rules)} rules ({alerts} alerts) use only registered metrics "
          f"({len(known)} names known); every alert has severity, summary, a runbook section "
          f"and firing and silent tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
