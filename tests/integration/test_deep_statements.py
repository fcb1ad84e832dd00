"""test_deep_statements.py: statements nested deeper than the proxy can parse
on its stack (a JOIN chain of 5,000 links with AND in every ON, a UNION chain,
parentheses 20,000 deep) reach the server or are refused, and the proxy lives
on: libpg_query recurses once or more per tree level, so the proxy measures
the nesting from the tokens before it parses (keys_too_deep_to_parse).
"""
import psycopg

from sgtest import check, dsn, run_parts


def run(sql):
    """Runs sql through the proxy; returns the SQLSTATE of its error or None."""
    with psycopg.connect(dsn(), autocommit=True) as c:
        try:
            c.execute(sql)
            return None
        except psycopg.Error as e:
            return e.sqlstate
        finally:
            pass


def alive():
    with psycopg.connect(dsn(), autocommit=True) as c:
        return c.execute("SELECT 41 + 1").fetchone()[0] == 42


def part_join_chain():
    joins = " ".join("JOIN sg_users u%d ON true AND u%d.id = 1" % (i, i) for i in range(5000))
    state = run("SELECT 1 FROM sg_users u " + joins)
    check(alive(), "the proxy alive after a 5,000-link JOIN chain", state)


def part_union_chain():
    state = run(" UNION ".join("SELECT id FROM sg_users WHERE id = %d AND true" % i
                               for i in range(5000)))
    check(alive(), "the proxy alive after a 5,000-branch UNION", state)


def part_parentheses():
    state = run("SELECT " + "(" * 20000 + "1" + ")" * 20000)
    check(state is not None, "an error for 20,000 parentheses", state)
    check(alive(), "the proxy alive after 20,000 parentheses", state)


run_parts([
    ("join_chain", part_join_chain),
    ("union_chain", part_union_chain),
    ("parentheses", part_parentheses),
])
