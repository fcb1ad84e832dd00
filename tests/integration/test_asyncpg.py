"""test_asyncpg.py: asyncpg through the proxy (binary protocol, named prepared
statements "__asyncpg_stmt_N__", pipelined Bind/Execute in executemany,
binary COPY). Everything runs twice: with asyncpg's default statement cache
and with statement_cache_size=0.
"""
import asyncio
import datetime
import io
import json
import os
import uuid
from decimal import Decimal

import asyncpg

from sgtest import (asyncpg_args, check, check_eq, conninfo_dict, direct_dsn, fail, pool_mode,
                    run_parts, table_name)

MODE = pool_mode()
TABLES = []


async def connect(cache, **kw):
    args = asyncpg_args(timeout=15, **kw)
    if cache is not None:
        args["statement_cache_size"] = cache
    return await asyncpg.connect(**args)


def tname(prefix, cache):
    t = table_name("%s_c%s" % (prefix, "def" if cache is None else cache))
    TABLES.append(t)
    return t


async def part_fetch(cache):
    conn = await connect(cache)
    try:
        rows = await conn.fetch("select g, g::text as s from generate_series(1, $1::int) g", 50)
        check_eq(len(rows), 50, "fetch: row count")
        check_eq([(r["g"], r["s"]) for r in rows[:3]], [(1, "1"), (2, "2"), (3, "3")], "fetch: rows")
        check_eq(sum(r[0] for r in rows), 1275, "fetch: sum")
        row = await conn.fetchrow("select $1::int + 1 as a, $2::text || '!' as b", 41, "hi")
        check_eq((row["a"], row["b"]), (42, "hi!"), "fetchrow")
        none = await conn.fetchrow("select 1 where false")
        check(none is None, None, none, "fetchrow of no rows")
        v = await conn.fetchval("select count(*) from generate_series(1, $1::int)", 1234)
        check_eq(v, 1234, "fetchval")
        v = await conn.fetchval("select $1::text", "päivää ✓")
        check_eq(v, "päivää ✓", "fetchval unicode")
        # The same statements again (from the cache, when there is one).
        for i in range(20):
            v = await conn.fetchval("select count(*) from generate_series(1, $1::int)", i)
            check_eq(v, i, "fetchval repeated %d" % i)
        status = await conn.execute("select 1; select 2")
        check_eq(status, "SELECT 1", "execute of two statements (simple protocol) status")
    finally:
        await conn.close()


async def part_executemany(cache):
    t = tname("apg_many", cache)
    conn = await connect(cache)
    try:
        await conn.execute("create table %s (id int primary key, name text, amount numeric)" % t)
        rows = [(i, "name-%d" % i, Decimal(i) / 8) for i in range(1, 1001)]
        await conn.executemany("insert into %s values ($1, $2, $3)" % t, rows)
        r = await conn.fetchrow("select count(*), sum(id), sum(amount), count(distinct name) from " + t)
        check_eq(tuple(r), (1000, 500500, Decimal(500500) / 8, 1000), "executemany: count/sums")
        # executemany that fails half way (duplicate key) inserts nothing.
        try:
            await conn.executemany("insert into %s values ($1, $2, $3)" % t,
                                   [(2000, "x", 1), (2001, "y", 2), (5, "dup", 3), (2002, "z", 4)])
            fail("executemany with a duplicate key did not raise")
        except asyncpg.UniqueViolationError:
            pass
        v = await conn.fetchval("select count(*) from " + t)
        check_eq(v, 1000, "rows after a failed executemany (it is atomic)")
        check_eq(await conn.fetchval("select 7"), 7, "query after a failed executemany")
    finally:
        await conn.close()


async def part_prepare(cache):
    conn = await connect(cache)
    try:
        st = await conn.prepare("select $1::int * $2::int as p, $3::text || $1::text as s")
        check_eq([a.name for a in st.get_attributes()], ["p", "s"], "prepared statement attributes")
        check_eq([p.name for p in st.get_parameters()], ["int4", "int4", "text"],
                 "prepared statement parameter types")
        for i in range(100):
            r = await st.fetchrow(i, i + 1, "n")
            check_eq((r["p"], r["s"]), (i * (i + 1), "n%d" % i), "prepared fetchrow %d" % i)
        st2 = await conn.prepare("select g from generate_series(1, $1::int) g")
        for i in (0, 1, 10, 100):
            rows = await st2.fetch(i)
            check_eq([r[0] for r in rows], list(range(1, i + 1)), "prepared fetch %d" % i)
        check_eq(await st2.fetchval(5), 1, "prepared fetchval")
        # Two statements used alternately, and one more after an error.
        for i in range(30):
            check_eq(await st.fetchval(i, 2, "x"), 2 * i, "alternating st %d" % i)
            check_eq(len(await st2.fetch(i % 5)), i % 5, "alternating st2 %d" % i)
            if i == 15:
                try:
                    await conn.fetchval("select 1 / $1::int", 0)
                    fail("division by zero did not raise")
                except asyncpg.DivisionByZeroError:
                    pass
        # A server-side cursor from the prepared statement, in a transaction.
        async with conn.transaction():
            total = 0
            async for r in st2.cursor(10000, prefetch=500):
                total += r[0]
            check_eq(total, 10000 * 10001 // 2, "cursor over a prepared statement")
    finally:
        await conn.close()


async def part_copy(cache):
    t = tname("apg_copy", cache)
    conn = await connect(cache)
    try:
        await conn.execute("create table %s (id int, name text, ts timestamptz, data bytea)" % t)
        base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
        records = [(i, "row %d é" % i, base + datetime.timedelta(seconds=i), bytes([i % 256]) * 3)
                   for i in range(1, 10001)]
        res = await conn.copy_records_to_table(t, records=records)
        check_eq(res, "COPY 10000", "copy_records_to_table status")
        r = await conn.fetchrow("select count(*), sum(id), max(ts) from " + t)
        check_eq(tuple(r), (10000, 50005000, base + datetime.timedelta(seconds=10000)),
                 "after copy_records_to_table")
        back = await conn.fetch("select id, name, ts, data from %s order by id" % t)
        check(list(map(tuple, back)) == records, "rows equal to the copied records",
              "first difference %r" % (next(((tuple(a), b) for a, b in zip(back, records)
                                             if tuple(a) != b), None),))
        out = io.BytesIO()
        res = await conn.copy_from_query("select id, name from %s where id <= $1 order by id" % t,
                                         500, output=out, format="csv")
        check_eq(res, "COPY 500", "copy_from_query status")
        lines = out.getvalue().decode().splitlines()
        check_eq(len(lines), 500, "copy_from_query line count")
        check_eq(lines[0], "1,row 1 é", "copy_from_query first line")
        check_eq(lines[-1], "500,row 500 é", "copy_from_query last line")
        out = io.BytesIO()
        res = await conn.copy_from_table(t, output=out, columns=["id"])
        check_eq(sum(int(x) for x in out.getvalue().split()), 50005000, "copy_from_table sum")
        check_eq(await conn.fetchval("select 1"), 1, "query after COPY")
    finally:
        await conn.close()


async def part_transaction(cache):
    t = tname("apg_tx", cache)
    conn = await connect(cache)
    try:
        await conn.execute("create table %s (id int primary key, v text)" % t)

        class Boom(Exception):
            pass

        try:
            async with conn.transaction():
                await conn.execute("insert into %s values (1, 'a')" % t)
                await conn.execute("insert into " + t + " values ($1, $2)", 2, "b")
                check_eq(await conn.fetchval("select count(*) from " + t), 2,
                         "rows inside the transaction")
                raise Boom()
        except Boom:
            pass
        check_eq(await conn.fetchval("select count(*) from " + t), 0,
                 "rows after the transaction raised")
        check(not conn.is_in_transaction(), "not in a transaction", "in a transaction")
        # A database error inside the transaction.
        try:
            async with conn.transaction():
                await conn.execute("insert into %s values (1, 'a')" % t)
                await conn.execute("insert into %s values (1, 'again')" % t)
            fail("duplicate key did not raise")
        except asyncpg.UniqueViolationError:
            pass
        check_eq(await conn.fetchval("select count(*) from " + t), 0,
                 "rows after a failed transaction")
        # Savepoints (nested transaction blocks).
        async with conn.transaction():
            await conn.execute("insert into %s values (10, 'outer')" % t)
            try:
                async with conn.transaction():
                    await conn.execute("insert into %s values (11, 'inner')" % t)
                    await conn.execute("select 1/0")
            except asyncpg.DivisionByZeroError:
                pass
            await conn.execute("insert into %s values (12, 'outer2')" % t)
        rows = await conn.fetch("select id from %s order by id" % t)
        check_eq([r[0] for r in rows], [10, 12], "rows after a rolled back savepoint")
        # A committed transaction is visible to another client.
        async with conn.transaction():
            await conn.execute("insert into %s values (20, 'c')" % t)
        other = await connect(cache)
        try:
            check_eq(await other.fetchval("select count(*) from %s where id = 20" % t), 1,
                     "committed row seen by another client")
        finally:
            await other.close()
    finally:
        await conn.close()


async def part_concurrent(cache):
    n_conn, n_q = 20, 50

    async def one(k):
        conn = await connect(cache)
        try:
            # Odd connections prepare another statement first, so that the
            # same asyncpg statement name means different statements on
            # different connections.
            if k % 2:
                v = await conn.fetchval("select $1::int + 1000", k)
                if v != k + 1000:
                    return "connection %d first query: expected %r, got %r" % (k, k + 1000, v)
            st = await conn.prepare("select $1::int * 2 + $2::int")
            for i in range(n_q):
                if i % 3 == 0:
                    v = await st.fetchval(i, k)
                    want = i * 2 + k
                elif i % 3 == 1:
                    v = await conn.fetchval("select $1::text || $2::text", "c%d-" % k, str(i))
                    want = "c%d-%d" % (k, i)
                else:
                    v = await conn.fetchval("select count(*) from generate_series(1, $1::int)", k + i)
                    want = k + i
                if v != want:
                    return "connection %d query %d: expected %r, got %r" % (k, i, want, v)
            return None
        finally:
            await conn.close()

    results = await asyncio.gather(*[one(k) for k in range(n_conn)], return_exceptions=True)
    bad = [r for r in results if r is not None]
    if bad:
        fail("%d of %d concurrent connections failed: %s" % (
            len(bad), n_conn, "; ".join("%s" % (b if isinstance(b, str) else repr(b)) for b in bad[:5])))


async def part_types(cache):
    t = tname("apg_types", cache)
    # asyncpg's type introspection query (set_type_codec) is slow under JIT;
    # jit=off also checks that a startup setting is kept by the proxy.
    conn = await connect(cache, server_settings={"jit": "off"})
    check_eq(await conn.fetchval("show jit"), "off", "startup setting jit")
    try:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")
        await conn.execute("""create table %s (
            id int8, n numeric, u uuid, ts timestamptz, j jsonb, b bytea,
            ai int4[], at text[], an numeric[], a2 int8[], d date, iv interval, f8 float8,
            bo bool)""" % t)
        big = bytes(os.urandom(256 * 1024))
        vals = [
            (9223372036854775807, Decimal("12345678901234567890.123456789"), uuid.uuid4(),
             datetime.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=datetime.timezone.utc),
             {"a": [1, 2, {"b": None}], "é": "✓", "n": 1.5}, big, [1, -2, 3, None],
             ["x", "y z", "", None, "ü"], [Decimal("1.10"), Decimal("-0.000001")],
             [[1, 2], [3, 4]], datetime.date(1999, 12, 31),
             datetime.timedelta(days=3, seconds=7, microseconds=5), 1.0e-300, True),
            (-9223372036854775808, Decimal("-0.5"), uuid.UUID(int=0),
             datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc), [], b"", [], [], [],
             [], datetime.date(2000, 1, 1), datetime.timedelta(0), float("inf"), False),
            (0, Decimal("1e-20"), uuid.UUID(int=2 ** 128 - 1),
             datetime.datetime(2038, 1, 19, 3, 14, 8, tzinfo=datetime.timezone.utc), "just a string",
             b"\x00\xff\x00", None, None, None, None, None, None, -0.0, None),
        ]
        await conn.executemany("insert into %s values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
                               " $11, $12, $13, $14)" % t, vals)
        rows = await conn.fetch("select * from %s order by id desc" % t)
        want = sorted(vals, key=lambda v: -v[0])
        for got, exp in zip(rows, want):
            got = tuple(got)
            for i, (g, e) in enumerate(zip(got, exp)):
                if g != e:
                    fail("binary round trip, column %d: expected %r, got %r"
                         % (i, e if not isinstance(e, bytes) or len(e) < 20 else "%d bytes" % len(e),
                            g if not isinstance(g, bytes) or len(g) < 20 else "%d bytes" % len(g)))
        check_eq(len(rows), 3, "rows read back")
        # Values straight through parameters and back.
        for v, typ in [(1 << 62, "int8"), (Decimal("3.14159265358979323846264338327950288"), "numeric"),
                       (uuid.UUID("12345678-1234-5678-1234-567812345678"), "uuid"),
                       (b"\x01\x02" * 1000, "bytea"), ([1.5, None, -2.25], "float8[]"),
                       ([uuid.UUID(int=5)], "uuid[]"), ({"k": "v"}, "jsonb")]:
            g = await conn.fetchval("select $1::%s" % typ, v)
            check_eq(g, v, "select $1::%s" % typ)
        nan = await conn.fetchval("select $1::numeric", Decimal("NaN"))
        check(nan.is_nan(), "NaN", nan, "numeric NaN round trip")
        # Server-side computation on binary parameters.
        r = await conn.fetchrow("select $1::int8 + 1, $2::numeric * 2, length($3::bytea),"
                                " jsonb_typeof($4::jsonb), array_length($5::int4[], 1)",
                                41, Decimal("0.25"), b"abc", [1], [5, 6, 7])
        check_eq(tuple(r), (42, Decimal("0.50"), 3, "array", 3), "server-side computation")
    finally:
        await conn.close()


def variant(cache):
    label = "default cache" if cache is None else "statement_cache_size=%d" % cache
    return [
        ("%s: fetch" % label, lambda: asyncio.run(part_fetch(cache))),
        ("%s: executemany" % label, lambda: asyncio.run(part_executemany(cache))),
        ("%s: prepare" % label, lambda: asyncio.run(part_prepare(cache))),
        ("%s: copy" % label, lambda: asyncio.run(part_copy(cache))),
        ("%s: transaction" % label, lambda: asyncio.run(part_transaction(cache))),
        ("%s: 20 concurrent connections" % label, lambda: asyncio.run(part_concurrent(cache))),
        ("%s: binary types" % label, lambda: asyncio.run(part_types(cache))),
    ]


def cleanup():
    async def drop():
        d = conninfo_dict(direct_dsn())
        c = await asyncpg.connect(host=d["host"], port=int(d["port"]), user=d["user"],
                                  password=d.get("password"), database=d["dbname"])
        try:
            for t in TABLES:
                await c.execute("drop table if exists " + t)
        finally:
            await c.close()
    asyncio.run(drop())


run_parts(variant(None) + variant(0), cleanup)
