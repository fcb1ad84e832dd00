"""test_metrics.py: the Prometheus endpoint (metrics: in the config, SPEC.md 5).

The runner exports SG_METRICS=host:port, where the proxy serves /metrics.

- GET /metrics answers 200 with the text format 0.0.4 content type, and the
  body parses strictly (every line a HELP, a TYPE or `name{labels} value` of
  the family declared last, no family twice); when python3-prometheus-client
  is installed its parser must read it too, to the same samples;
- statements run through the proxy raise shardgate_statements_total of
  shard s0 by at least their number, a division by zero raises
  shardgate_errors_total{class="22"}, and the duration histogram count of s0
  grows by as much;
- every duration histogram is cumulative and monotone in le, ends at +Inf,
  and its _count equals its +Inf bucket;
- the monitor's view is there: node_up, breaker_state and the replicas' lag
  for every node of s0 and s1; the pools' connections within their limit;
- clients: the gauge counts our open connection;
- another path is 404, another method 405.
"""
import math
import os
import re
import urllib.error
import urllib.request

import psycopg

from sgtest import check, check_eq, dsn, env, fail, note, pool_mode, run_parts

STATEMENTS = 25
NODES = [("s0", "primary"), ("s0", "replica1"), ("s0", "replica2"), ("s1", "primary")]


def url(path):
    return "http://%s%s" % (env("SG_METRICS"), path)


def fetch(path="/metrics", method="GET"):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url(path), method=method, data=b"x" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")


# ---- a strict reader of the text exposition format 0.0.4 ----

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL = r'(%s)="((?:[^"\\\n]|\\[\\"n])*)"' % LABEL_NAME
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*)?\})? (\S+)$" % (NAME, LABEL, LABEL))
VALUE = re.compile(r"^(?:[+-]?Inf|NaN|[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


def unescape(value):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def parse(text):
    """Returns {family: type} and [(name, {label: value}, float)]; fails on
    anything the format does not allow."""
    check(text.endswith("\n"), "the exposition ends with a newline", text[-40:])
    families, samples = {}, []
    family, ftype = None, None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        if line.startswith("# HELP "):
            parts = line.split(" ", 3)
            check(len(parts) == 4 and re.match("^%s$" % NAME, parts[2]) and parts[3],
                  "# HELP name text", line, "line %d" % n)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            check(len(parts) == 4 and re.match("^%s$" % NAME, parts[2]) and parts[3] in TYPES,
                  "# TYPE name type", line, "line %d" % n)
            family, ftype = parts[2], parts[3]
            check(family not in families, "each family declared once", family, "line %d" % n)
            families[family] = ftype
            continue
        check(line and not line.startswith("#"), "a sample line", line, "line %d" % n)
        m = SAMPLE.match(line)
        check(m is not None, "name{labels} value", line, "line %d" % n)
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(len(m.groups()))
        check(VALUE.match(value) is not None, "a float value", value, "line %d" % n)
        labels = {}
        for lm in re.finditer(LABEL, labels_text):
            check(lm.group(1) not in labels, "distinct label names", line, "line %d" % n)
            labels[lm.group(1)] = unescape(lm.group(2))
        allowed = {family}
        if ftype == "histogram":
            allowed = {family + "_bucket", family + "_sum", family + "_count"}
        check(name in allowed, "a sample of family %s" % family, name, "line %d" % n)
        samples.append((name, labels, float(value)))
    return families, samples


try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None


def cross_check(text, samples):
    """prometheus_client's parser (when installed) reads the same samples."""
    if text_string_to_metric_families is None:
        return
    theirs = sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                    for f in text_string_to_metric_families(text) for s in f.samples)
    ours = sorted((n, tuple(sorted(l.items())), v) for n, l, v in samples)
    check_eq(theirs, ours, "prometheus_client reads the same samples")


def scrape():
    status, headers, body = fetch()
    check_eq(status, 200, "GET /metrics status")
    ctype = headers.get("Content-Type", "")
    check(ctype.startswith("text/plain; version=0.0.4"), "text/plain; version=0.0.4", ctype,
          "Content-Type")
    families, samples = parse(body)
    cross_check(body, samples)
    return families, samples


def total(samples, name, **labels):
    """Sum of the samples named `name` whose labels include `labels`."""
    return sum(v for n, l, v in samples
               if n == name and all(l.get(k) == want for k, want in labels.items()))


def find(samples, name, **labels):
    return [v for n, l, v in samples
            if n == name and all(l.get(k) == want for k, want in labels.items())]


def connect():
    return psycopg.connect(dsn(), autocommit=True)


state = {}


def part_statements_and_errors_counted():
    fams, before = scrape()
    for fam, t in (("shardgate_statements_total", "counter"),
                   ("shardgate_errors_total", "counter"),
                   ("shardgate_statement_duration_seconds", "histogram"),
                   ("shardgate_pool_waiting", "gauge"),
                   ("shardgate_replica_lag_bytes", "gauge")):
        check_eq(fams.get(fam), t, "TYPE of %s" % fam)
    conn = connect()
    for i in range(STATEMENTS):
        # Different literals, one shape: the route cache answers most.
        check_eq(conn.execute("select %d + 1" % i).fetchone()[0], i + 1, "result")
    try:
        conn.execute("select 1 / 0")
        fail("select 1 / 0 should fail")
    except psycopg.errors.DivisionByZero:
        pass
    _, after = scrape()

    ran = STATEMENTS + 1
    grew = (total(after, "shardgate_statements_total", shard="s0") -
            total(before, "shardgate_statements_total", shard="s0"))
    check(grew >= ran, ">= %d more statements on s0" % ran, grew, "shardgate_statements_total")
    grew = (total(after, "shardgate_statement_duration_seconds_count", shard="s0") -
            total(before, "shardgate_statement_duration_seconds_count", shard="s0"))
    check(grew >= ran, ">= %d more in the s0 duration histograms" % ran, grew, "_count")
    grew = (total(after, "shardgate_errors_total", shard="s0", **{"class": "22"}) -
            total(before, "shardgate_errors_total", shard="s0", **{"class": "22"}))
    check(grew >= 1, ">= 1 more class-22 error on s0", grew, "shardgate_errors_total")
    if pool_mode() == "transaction":
        grew = (total(after, "shardgate_route_cache_hits_total") -
                total(before, "shardgate_route_cache_hits_total"))
        check(grew >= 1, ">= 1 route cache hit for %d statements of one shape" % STATEMENTS,
              grew, "shardgate_route_cache_hits_total")
    clients = find(after, "shardgate_clients")
    check(len(clients) == 1 and clients[0] >= 1, "shardgate_clients >= 1 (ours is open)",
          clients)
    conn.close()
    state["samples"] = after


def part_histograms_cumulative():
    _, samples = scrape()
    series = {}
    for n, l, v in samples:
        if n.startswith("shardgate_statement_duration_seconds_"):
            key = (l.get("shard"), l.get("role"))
            series.setdefault(key, {"buckets": [], "count": None, "sum": None})
            if n.endswith("_bucket"):
                le = l.get("le")
                check(le is not None, "an le label", l)
                series[key]["buckets"].append((math.inf if le == "+Inf" else float(le), v))
            elif n.endswith("_count"):
                series[key]["count"] = v
            elif n.endswith("_sum"):
                series[key]["sum"] = v
    check(("s0", "primary") in series and ("s1", "primary") in series,
          "histograms of s0 and s1 as primary", sorted(series))
    if pool_mode() == "transaction":
        check(("s0", "replica") in series, "a histogram of s0's replicas", sorted(series))
    for key, h in series.items():
        buckets = h["buckets"]
        check(len(buckets) >= 10, ">= 10 buckets", len(buckets), "%s/%s" % key)
        les = [le for le, _ in buckets]
        check(les == sorted(les) and len(set(les)) == len(les), "le strictly increasing", les,
              "%s/%s" % key)
        check_eq(les[-1], math.inf, "%s/%s: the last bucket" % key)
        counts = [c for _, c in buckets]
        check(all(a <= b for a, b in zip(counts, counts[1:])), "cumulative bucket counts",
              counts, "%s/%s" % key)
        check_eq(h["count"], counts[-1], "%s/%s: _count equals the +Inf bucket" % key)
        check(h["sum"] is not None and h["sum"] >= 0, "a _sum >= 0", h["sum"], "%s/%s" % key)
        check(h["count"] == 0 or h["sum"] > 0, "a positive _sum with statements", h["sum"],
              "%s/%s" % key)


def part_nodes_and_pools():
    _, samples = scrape()
    for shard, node in NODES:
        up = find(samples, "shardgate_node_up", shard=shard, node=node)
        check(len(up) == 1 and up[0] in (0, 1), "one node_up of 0 or 1", up,
              "%s/%s" % (shard, node))
        br = find(samples, "shardgate_breaker_state", shard=shard, node=node)
        check(len(br) == 1 and br[0] in (0, 1, 2), "one breaker_state of 0, 1 or 2", br,
              "%s/%s" % (shard, node))
        info = find(samples, "shardgate_node_info", shard=shard, node=node)
        check_eq(info, [1.0], "%s/%s: node_info" % (shard, node))
        for gauge in ("shardgate_pool_connections", "shardgate_pool_connections_max",
                      "shardgate_pool_waiting", "shardgate_pool_wait_seconds_total"):
            v = find(samples, gauge, shard=shard, node=node)
            check(len(v) == 1 and v[0] >= 0, "one %s >= 0" % gauge, v, "%s/%s" % (shard, node))
        used = find(samples, "shardgate_pool_connections", shard=shard, node=node)[0]
        limit = find(samples, "shardgate_pool_connections_max", shard=shard, node=node)[0]
        check(used <= limit, "connections within the limit (%g)" % limit, used,
              "%s/%s" % (shard, node))
    # The statements of the first part opened at least one pool on s0.
    limit = total(samples, "shardgate_pool_connections_max", shard="s0")
    check(limit > 0, "a pool limit on s0 after statements ran there", limit)
    up = find(samples, "shardgate_node_up", shard="s0", node="primary")
    check_eq(up, [1.0], "the s0 primary is up")
    for node in ("replica1", "replica2"):
        lag = find(samples, "shardgate_replica_lag_bytes", shard="s0", node=node)
        check(len(lag) == 1 and lag[0] >= 0, "one lag in bytes >= 0", lag, "s0/" + node)
        lag = find(samples, "shardgate_replica_lag_seconds", shard="s0", node=node)
        check(len(lag) == 1 and lag[0] >= 0, "one lag in seconds >= 0", lag, "s0/" + node)
    for name in ("shardgate_route_cache_hits_total", "shardgate_route_cache_misses_total",
                 "shardgate_rebalance_waiting", "shardgate_rebalance_map_version"):
        v = find(samples, name)
        check(len(v) == 1 and v[0] >= 0, "one %s >= 0" % name, v)


def part_other_paths_and_methods():
    status, _, _ = fetch("/")
    check_eq(status, 404, "GET /")
    status, _, _ = fetch("/metricsx")
    check_eq(status, 404, "GET /metricsx")
    status, headers, _ = fetch("/metrics", "POST")
    check_eq(status, 405, "POST /metrics")
    check("GET" in headers.get("Allow", ""), "an Allow header naming GET", headers.get("Allow"))
    status, _, body = fetch("/metrics?x=1")
    check_eq(status, 200, "GET /metrics?x=1 (the query string is ignored)")


note("prometheus_client %s" % ("cross-checks the parse" if text_string_to_metric_families
                               else "not installed: the strict parser only"))
run_parts([
    ("statements_and_errors_counted", part_statements_and_errors_counted),
    ("histograms_cumulative", part_histograms_cumulative),
    ("nodes_and_pools", part_nodes_and_pools),
    ("other_paths_and_methods", part_other_paths_and_methods),
])
