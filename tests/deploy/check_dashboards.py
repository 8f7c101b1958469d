#!/usr/bin/env python3
"""Checks of the Grafana dashboards in deploy/grafana (used by tests/deploy/dashboards_test.sh).

Usage:
  check_dashboards.py static REPO_ROOT
  check_dashboards.py live REPO_ROOT PROMETHEUS_URL DEADLINE_SECONDS

static: every deploy/grafana/dashboards/*.json parses and
  - has a unique uid and title, schemaVersion 36..39, and panels with unique ids;
  - every panel has a title, a description, a unit and targets, each target an expr and a refId
    unique in its panel; every panel, target and query variable uses the datasource uid that
    deploy/grafana/provisioning/datasources/prometheus.yaml provisions;
  - every metric name in every expr (and in the variables' label_values() queries) is one our code
    registers (found as tests/deploy/check_rules.py finds them), `up`, or a recording rule of
    deploy/prometheus/rules; every $variable an expr uses is defined or one of Grafana's own, and
    is matched with =~ (a multi-value or All selection is a regex).

live: against a Prometheus that scrapes the running suite, fills in the variables as Grafana
  would (query variables from the label values Prometheus has, every value selected; $__interval,
  $__rate_interval and $__range as 30s), then runs every expr through /api/v1/query and fails if
  one errors, or is still empty when DEADLINE_SECONDS have passed (the queries are retried until
  then, so the test waits for Prometheus' scrapes and rule evaluations without sleeping blindly).
  A result whose every value is NaN (a quantile or ratio of nothing) counts as empty.

Only the standard library. Exits 0 when everything holds, else 1.
"""

import glob
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# Reuses check_rules.py's PromQL and registration readers; no __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_rules  # noqa: E402  (metric_names, registered_names, read_rules)

# Grafana's own variables and what the live check puts in their place. 30s holds many samples at
# the test's 1 s scrape interval (rate() needs two).
BUILTIN_VARIABLES = {
    "__rate_interval": "30s",
    "__interval": "30s",
    "__range": "30s",
    "__range_s": "30",
    "__interval_ms": "30000",
}

# DJ_DASHBOARDS_VERBOSE=1 prints what each live query returned.
VERBOSE = os.environ.get("DJ_DASHBOARDS_VERBOSE") == "1"

PANEL_TYPES_WITHOUT_QUERIES = {"row", "text", "news", "dashlist"}

problems = []


def problem(text):
    problems.append(text)


def paths(root):
    grafana = os.path.join(root, "deploy", "grafana")
    return {
        "datasource": os.path.join(grafana, "provisioning", "datasources", "prometheus.yaml"),
        "provider": os.path.join(grafana, "provisioning", "dashboards", "dangjian.yaml"),
        "dashboards": sorted(glob.glob(os.path.join(grafana, "dashboards", "*.json"))),
        "rules": sorted(glob.glob(os.path.join(root, "deploy", "prometheus", "rules", "*.yml"))),
    }


def provisioned_datasource_uid(path):
    """The uid of the Prometheus datasource the provisioning file declares (read line by line:
    no YAML parser in the standard library)."""
    if not os.path.exists(path):
        problem(f"{path} is missing")
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    uid = re.search(r"^\s+uid:\s*['\"]?([\w-]+)['\"]?\s*$", text, re.M)
    if not re.search(r"^\s+type:\s*prometheus\s*$", text, re.M) or not uid:
        problem(f"{path}: no datasource of type prometheus with a uid")
        return None
    if not re.search(r"^\s+url:\s*\S*\$\{?\w+", text, re.M):
        problem(f"{path}: the datasource url should come from an environment variable")
    return uid.group(1)


def check_provider(path):
    if not os.path.exists(path):
        problem(f"{path} is missing")
        return
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not re.search(r"^\s+folder:\s*['\"]?dangjian['\"]?\s*$", text, re.M):
        problem(f"{path}: the provider does not load into a folder named dangjian")
    if not re.search(r"^\s+path:\s*\S+", text, re.M):
        problem(f"{path}: the provider names no path")


def all_panels(panels):
    """Panels, and the panels inside collapsed rows."""
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def variable_query(v):
    q = v.get("query", "")
    if isinstance(q, dict):
        q = q.get("query", "")
    return q or v.get("definition", "")


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.*?)\s*,\s*(\w+)\s*\)\s*$", re.S)
VARIABLE_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def referenced_variables(text):
    return {a or b or c for a, b, c in VARIABLE_REF.findall(text)}


def queries_of(dashboard):
    """(panel, target) for every query target of the dashboard."""
    for p in all_panels(dashboard.get("panels", [])):
        for t in p.get("targets", []):
            yield p, t


def load_dashboards(files):
    dashboards = []
    for path in files:
        name = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as f:
                dashboards.append((name, json.load(f)))
        except (OSError, ValueError) as e:
            problem(f"{name}: does not parse as JSON: {e}")
    return dashboards


# --- static ---------------------------------------------------------------------------------


def static_check(root):
    where = paths(root)
    uid = provisioned_datasource_uid(where["datasource"])
    check_provider(where["provider"])
    if not where["dashboards"]:
        problem("no dashboards in deploy/grafana/dashboards")
    known = check_rules.registered_names(root)
    if "grpc_server_handled_total" not in known or "dj_db_errors_total" not in known:
        problem("found none of our metric names in common/*.cc: has the registration moved?")
    recorded = {r["name"] for path in where["rules"] for r in check_rules.read_rules(path)
                if r["kind"] == "record"}
    known |= check_rules.SCRAPE_METRICS | recorded
    allowed = known

    dashboards = load_dashboards(where["dashboards"])
    seen_uids, seen_titles, count = {}, {}, 0
    for name, d in dashboards:
        for key, seen in (("uid", seen_uids), ("title", seen_titles)):
            value = d.get(key)
            if not value:
                problem(f"{name}: no {key}")
            elif value in seen:
                problem(f"{name}: {key} {value!r} is also the {key} of {seen[value]}")
            else:
                seen[value] = name
        if not 36 <= int(d.get("schemaVersion", 0)) <= 39:
            problem(f"{name}: schemaVersion {d.get('schemaVersion')!r}, expected 36..39")

        variables = {}
        for v in d.get("templating", {}).get("list", []):
            vname = v.get("name")
            variables[vname] = v
            if v.get("type") == "query":
                if (v.get("datasource") or {}).get("uid") != uid:
                    problem(f"{name}: variable ${vname}: datasource {v.get('datasource')!r}, "
                            f"not uid {uid}")
                m = LABEL_VALUES.match(variable_query(v))
                if not m:
                    problem(f"{name}: variable ${vname}: query {variable_query(v)!r} is not "
                            f"label_values(selector, label)")
                else:
                    for metric in sorted(check_rules.metric_names(m.group(1)) - allowed):
                        problem(f"{name}: variable ${vname}: metric {metric} is registered "
                                f"nowhere (nor is it up or a recording rule)")
            elif v.get("type") == "custom":
                if not v.get("query"):
                    problem(f"{name}: variable ${vname}: a custom variable with no values")

        ids = {}
        for p in all_panels(d.get("panels", [])):
            title = p.get("title") or ""
            label = f"{name}: panel {p.get('id')} {title!r}"
            if p.get("id") is None:
                problem(f"{label}: no id")
            elif p["id"] in ids:
                problem(f"{label}: id {p['id']} is also the id of panel {ids[p['id']]!r}")
            else:
                ids[p["id"]] = title
            if not title.strip():
                problem(f"{label}: no title")
            if not (p.get("description") or "").strip():
                problem(f"{label}: no description")
            if p.get("type") in PANEL_TYPES_WITHOUT_QUERIES:
                continue
            if (p.get("datasource") or {}).get("uid") != uid:
                problem(f"{label}: datasource {p.get('datasource')!r}, not uid {uid}")
            if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
                problem(f"{label}: no unit (fieldConfig.defaults.unit)")
            targets = p.get("targets") or []
            if not targets:
                problem(f"{label}: no targets")
            refs = set()
            for t in targets:
                count += 1
                ref = t.get("refId")
                if not ref or ref in refs:
                    problem(f"{label}: target refId {ref!r} missing or repeated")
                refs.add(ref)
                if (t.get("datasource") or {}).get("uid") != uid:
                    problem(f"{label} {ref}: datasource {t.get('datasource')!r}, not uid {uid}")
                expr = (t.get("expr") or "").strip()
                if not expr:
                    problem(f"{label} {ref}: no expr")
                    continue
                used = check_rules.metric_names(expr)
                if not used:
                    problem(f"{label} {ref}: no metric name found in {expr!r}")
                for metric in sorted(used - allowed):
                    problem(f"{label} {ref}: metric {metric} is registered nowhere in common/ or "
                            f"services/ (nor is it up or a recording rule)")
                for var in sorted(referenced_variables(expr)):
                    if var not in variables and var not in BUILTIN_VARIABLES:
                        problem(f"{label} {ref}: ${var} is not a variable of the dashboard")
                for m in re.finditer(r"(\w+)\s*(!?=~?)\s*\"([^\"]*\$[^\"]*)\"", expr):
                    if m.group(2) in ("=", "!="):
                        problem(f"{label} {ref}: {m.group(0)}: match a variable with =~ or !~ "
                                f"(a multi-value or All selection is a regex)")

    if problems:
        return 1
    print(f"ok: {len(dashboards)} dashboards, {count} queries: ids, titles, descriptions, units, "
          f"datasource uid {uid} and metric names hold")
    return 0


# --- live -----------------------------------------------------------------------------------


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, params, post=True):
        """The `data` of a Prometheus API answer; raises RuntimeError with its error. Queries are
        POSTed (as Grafana's datasource does, httpMethod POST); some endpoints take GET only."""
        encoded = urllib.parse.urlencode(params, doseq=True)
        if post:
            request = urllib.request.Request(self.url + path, data=encoded.encode(), method="POST")
        else:
            request = urllib.request.Request(self.url + path + ("?" + encoded if encoded else ""))
        try:
            with urllib.request.urlopen(request, timeout=10) as r:
                answer = json.load(r)
        except urllib.error.HTTPError as e:
            try:
                answer = json.load(e)
            except ValueError:
                raise RuntimeError(f"HTTP {e.code} from {path}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RuntimeError(f"{path}: {e}") from None
        if answer.get("status") != "success":
            raise RuntimeError(f"{answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def label_values(self, selector, label):
        series = self.get("/api/v1/series", {"match[]": selector})
        return sorted({s[label] for s in series if label in s})

    def query(self, expr):
        """The samples of an instant query as (labels, value) pairs. A range vector is refused:
        Grafana cannot draw one."""
        data = self.get("/api/v1/query", {"query": expr})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "vector":
            return [(r.get("metric", {}), float(r["value"][1])) for r in result]
        if kind == "scalar":
            return [({}, float(result[1]))]
        raise RuntimeError(f"the expression gives a {kind}, not an instant vector or scalar")


def regex_value(values):
    """What Grafana puts in place of a multi-value selection inside a =~ matcher: the values,
    regex-escaped, as alternatives. The backslashes are doubled for the PromQL string."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def substitute(text, values):
    def repl(m):
        var = m.group(1) or m.group(2) or m.group(3)
        return values.get(var, m.group(0))
    return VARIABLE_REF.sub(repl, text)


def resolve_variables(prom, dashboard, name):
    """Values for the dashboard's variables, in order (a query may use earlier ones); None when
    one has no value (its panels would all say No data)."""
    values = dict(BUILTIN_VARIABLES)
    for v in dashboard.get("templating", {}).get("list", []):
        vname = v.get("name")
        if v.get("type") == "custom":
            options = [o.strip() for o in v.get("query", "").split(",") if o.strip()]
        elif v.get("type") == "query":
            m = LABEL_VALUES.match(variable_query(v))
            selector = substitute(m.group(1), values)
            options = prom.label_values(selector, m.group(2))
        else:
            continue
        if not options:
            problem(f"{name}: variable ${vname}: {variable_query(v)!r} has no values")
            return None
        # Single-value variables get their first value (Grafana's default); the others every one.
        if not v.get("multi") and not v.get("includeAll"):
            options = options[:1]
        values[vname] = regex_value(options)
    return values


def live_check(root, url, deadline_seconds):
    deadline = time.monotonic() + deadline_seconds
    prom = Prometheus(url)
    dashboards = load_dashboards(paths(root)["dashboards"])

    # Variables need series, so wait for them like for any query.
    pending = list(dashboards)
    resolved = {}
    while pending:
        retry = []
        for name, d in pending:
            before = len(problems)
            try:
                values = resolve_variables(prom, d, name)
            except RuntimeError as e:
                problem(f"{name}: a variable query failed: {e}")
                continue
            if values is None:
                if time.monotonic() < deadline:
                    del problems[before:]
                    retry.append((name, d))
                continue
            resolved[name] = values
        pending = retry
        if pending:
            time.sleep(0.5)

    queries = []
    for name, d in dashboards:
        if name not in resolved:
            continue
        for p, t in queries_of(d):
            if t.get("expr"):
                queries.append({"where": f"{name}: {p.get('title')!r} {t.get('refId')}",
                                "expr": substitute(t["expr"], resolved[name])})

    waiting = queries
    answered = 0
    while waiting:
        still = []
        for q in waiting:
            try:
                result = prom.query(q["expr"])
            except RuntimeError as e:
                problem(f"{q['where']}: query failed: {e}\n    {q['expr']}")
                continue
            numbers = [(labels, v) for labels, v in result if not math.isnan(v)]
            if numbers:
                answered += 1
                if VERBOSE:
                    print(f"{q['where']}: {len(result)} series, e.g. {numbers[0][0]} = "
                          f"{numbers[0][1]:g}")
                continue
            q["nan"] = bool(result)
            still.append(q)
        waiting = still
        if waiting and time.monotonic() >= deadline:
            for q in waiting:
                problem(f"{q['where']}: {'only NaN' if q.get('nan') else 'empty result'} "
                        f"after {deadline_seconds:.0f}s\n    {q['expr']}")
            break
        if waiting:
            time.sleep(0.5)

    if problems:
        return 1
    print(f"ok: all {answered} queries of {len(dashboards)} dashboards returned data")
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "static":
        rc = static_check(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "live":
        try:
            rc = live_check(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        except RuntimeError as e:
            problem(f"Prometheus did not answer: {e}")
            rc = 1
    else:
        sys.exit(__doc__)
    for p in problems:
        print(f"FAILED: {p}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
