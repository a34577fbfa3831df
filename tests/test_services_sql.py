"""
Tests for L{edgegw_tx.services.sql}: placeholder translation, value
conversion, parameter preparation.  Pure functions, no database.
"""

import datetime
import decimal
import json
import math
import uuid

from twisted.trial import unittest

from edgegw_tx.services.sql import (
    PlaceholderError,
    check_count,
    convert_rows,
    convert_value,
    first_keyword,
    sqlite_params,
    statement_inserts,
    translate_placeholders,
)

# (name, sql, expected text, expected count)
PLACEHOLDER_CASES = [
    ("plain", "SELECT * FROM t WHERE a = ? AND b = ?",
     "SELECT * FROM t WHERE a = %s AND b = %s", 2),
    ("none", "SELECT 1", "SELECT 1", 0),
    ("string literal", "SELECT '?' , ?", "SELECT '?' , %s", 1),
    ("doubled quote in string", "SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s", 1),
    ("string ending in doubled quote", "SELECT '''', ?", "SELECT '''', %s", 1),
    ("E string backslash quote", "SELECT E'it\\'s ?', ?", "SELECT E'it\\'s ?', %s", 1),
    ("lower-case e string", "SELECT e'\\\\', ?", "SELECT e'\\\\', %s", 1),
    ("backslash not special in standard string", "SELECT 'a\\', ?",
     "SELECT 'a\\', %s", 1),
    ("identifier ending in e is not E string", "SELECT name'x?', ?",
     "SELECT name'x?', %s", 1),
    ("U& string", "SELECT U&'d\\0061t?', ?", "SELECT U&'d\\0061t?', %s", 1),
    ("quoted identifier", 'SELECT "col?" FROM "t""?" WHERE x = ?',
     'SELECT "col?" FROM "t""?" WHERE x = %s', 1),
    ("line comment", "SELECT ? -- what?\n, ?", "SELECT %s -- what?\n, %s", 2),
    ("line comment at end", "SELECT ? -- what?", "SELECT %s -- what?", 1),
    ("block comment", "SELECT /* ? */ ?", "SELECT /* ? */ %s", 1),
    ("nested block comment", "SELECT /* a /* ? */ still ? */ ?",
     "SELECT /* a /* ? */ still ? */ %s", 1),
    ("minus is not a comment", "SELECT 1 - ?", "SELECT 1 - %s", 1),
    ("slash is not a comment", "SELECT 4 / ?", "SELECT 4 / %s", 1),
    ("dollar quote", "SELECT $$ ? $$, ?", "SELECT $$ ? $$, %s", 1),
    ("tagged dollar quote", "SELECT $fn$ ? $$ ? $fn$, ?",
     "SELECT $fn$ ? $$ ? $fn$, %s", 1),
    ("dollar-quoted function body", "CREATE FUNCTION f() RETURNS int AS $body$"
     " BEGIN RETURN 1; -- ?\n END $body$ LANGUAGE plpgsql; SELECT ?",
     "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; -- ?\n END"
     " $body$ LANGUAGE plpgsql; SELECT %s", 1),
    ("positional parameter is not a dollar quote", "SELECT $1, ?", "SELECT $1, %s", 1),
    ("dollar inside identifier", "SELECT a$b$ FROM t WHERE x = ?",
     "SELECT a$b$ FROM t WHERE x = %s", 1),
    ("percent outside literals doubled", "SELECT 7 % ?, ?", "SELECT 7 %% %s, %s", 2),
    ("percent in literal doubled too", "SELECT * FROM t WHERE a LIKE 'x%' AND b = ?",
     "SELECT * FROM t WHERE a LIKE 'x%%' AND b = %s", 1),
    ("percent with no placeholder", "SELECT '100%'", "SELECT '100%%'", 0),
    ("percent-s in literal", "SELECT '%s', ?", "SELECT '%%s', %s", 1),
    ("adjacent placeholders", "VALUES (?,?,?)", "VALUES (%s,%s,%s)", 3),
    ("unterminated string", "SELECT ?, 'open ?", "SELECT %s, 'open ?", 1),
    ("unterminated comment", "SELECT ? /* open ?", "SELECT %s /* open ?", 1),
    ("unterminated dollar quote", "SELECT ? $$ open ?", "SELECT %s $$ open ?", 1),
    ("non-ascii", "SELECT 'é?', ? AS \"naïve?\"", "SELECT 'é?', %s AS \"naïve?\"", 1),
]  # fmt: skip


class PlaceholderTests(unittest.TestCase):
    def test_table(self):
        """Each case of the quoting table translates as expected."""
        for name, sql, expected, count in PLACEHOLDER_CASES:
            self.assertEqual(
                translate_placeholders(sql), (expected, count), f"case {name!r}"
            )

    def test_translated_text_formats_back(self):
        """
        %-formatting the translated text with '?' for each placeholder gives
        back the original: nothing but placeholders changed (what psycopg2
        does with the text).
        """
        for name, sql, _, count in PLACEHOLDER_CASES:
            text, n = translate_placeholders(sql)
            self.assertEqual(text % (("?",) * n), sql, f"case {name!r}")

    def test_count_mismatch(self):
        """check_count raises naming both numbers; a match passes."""
        check_count(2, [1, 2])
        e = self.assertRaises(PlaceholderError, check_count, 2, [1])
        self.assertEqual(
            str(e), "the statement has 2 placeholders but 1 parameter was given"
        )
        e = self.assertRaises(PlaceholderError, check_count, 0, [1, 2])
        self.assertEqual(
            str(e), "the statement has 0 placeholders but 2 parameters were given"
        )


class KeywordTests(unittest.TestCase):
    def test_first_keyword(self):
        """The first word outside comments and parentheses, upper-cased."""
        self.assertEqual(first_keyword("insert into t"), "INSERT")
        self.assertEqual(first_keyword("  -- c\n/* x */ (SELECT 1)"), "SELECT")
        self.assertEqual(first_keyword("'x'"), "")
        self.assertEqual(first_keyword(""), "")

    def test_statement_inserts(self):
        """INSERT and REPLACE count as inserts; UPDATE and SELECT do not."""
        self.assertTrue(statement_inserts("INSERT INTO t VALUES (1)"))
        self.assertTrue(statement_inserts("/* x */ replace into t values (1)"))
        self.assertFalse(statement_inserts("UPDATE t SET a = 1"))
        self.assertFalse(statement_inserts("SELECT 'INSERT'"))


class ConvertValueTests(unittest.TestCase):
    def test_scalars(self):
        """null, booleans, integers, finite floats and strings pass through."""
        for value in (None, True, False, 0, -5, 2**70, 1.5, "héllo"):
            self.assertEqual(convert_value(value), value)
        self.assertIs(type(convert_value(True)), bool)

    def test_non_finite_floats(self):
        """NaN and infinities (not JSON) become PostgreSQL's spellings."""
        self.assertEqual(convert_value(math.nan), "NaN")
        self.assertEqual(convert_value(math.inf), "Infinity")
        self.assertEqual(convert_value(-math.inf), "-Infinity")

    def test_decimal(self):
        """Decimal becomes its exact string."""
        self.assertEqual(convert_value(decimal.Decimal("12345678901234567890.0001")),
                         "12345678901234567890.0001")
        self.assertEqual(convert_value(decimal.Decimal("NaN")), "NaN")

    def test_bytes(self):
        """bytes, bytearray and memoryview become base64."""
        for value in (b"\x00\xff", bytearray(b"\x00\xff"), memoryview(b"\x00\xff")):
            self.assertEqual(convert_value(value), "AP8=")

    def test_temporal(self):
        """datetime, date and time are ISO 8601; timedelta is seconds."""
        tz = datetime.timezone(datetime.timedelta(hours=2))
        self.assertEqual(
            convert_value(datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=tz)),
            "2024-01-02T03:04:05+02:00",
        )
        self.assertEqual(convert_value(datetime.datetime(2024, 1, 2, 3, 4, 5, 600)),
                         "2024-01-02T03:04:05.000600")
        self.assertEqual(convert_value(datetime.date(2024, 1, 2)), "2024-01-02")
        self.assertEqual(convert_value(datetime.time(12, 30)), "12:30:00")
        self.assertEqual(convert_value(datetime.timedelta(days=1, seconds=1.5)), 86401.5)

    def test_uuid(self):
        """UUID becomes its string."""
        u = uuid.UUID("12345678-1234-5678-1234-567812345678")
        self.assertEqual(convert_value(u), "12345678-1234-5678-1234-567812345678")

    def test_containers(self):
        """dicts and lists are converted element by element."""
        self.assertEqual(
            convert_value({"a": [decimal.Decimal("1.5"), b"\x01"], 2: math.nan}),
            {"a": ["1.5", "AQ=="], "2": "NaN"},
        )
        self.assertEqual(convert_value((1, 2)), [1, 2])

    def test_fallback(self):
        """Other values go through the fallback, str by default."""

        class Odd:
            def __str__(self):
                return "odd"

        self.assertEqual(convert_value(Odd()), "odd")
        self.assertEqual(convert_value([Odd()], fallback=lambda v: "fb"), ["fb"])

    def test_rows_are_json(self):
        """convert_rows gives columns and dict rows that json.dumps accepts strictly."""
        data = convert_rows(
            [("id",), ("amount",), ("at",)],
            [(1, decimal.Decimal("2.50"), datetime.date(2024, 5, 6)), (2, None, None)],
        )
        self.assertEqual(
            data,
            {
                "columns": ["id", "amount", "at"],
                "rows": [
                    {"id": 1, "amount": "2.50", "at": "2024-05-06"},
                    {"id": 2, "amount": None, "at": None},
                ],
            },
        )
        json.dumps(data, allow_nan=False)

    def test_no_description(self):
        """A statement without a result set gives no columns and no rows."""
        self.assertEqual(convert_rows(None, []), {"columns": [], "rows": []})


class SQLiteParamsTests(unittest.TestCase):
    def test_json_values(self):
        """Lists and objects become JSON text; scalars stay."""
        self.assertEqual(
            sqlite_params([1, "a", None, True, 1.5, [1, "é"], {"k": None}]),
            (1, "a", None, True, 1.5, '[1,"é"]', '{"k":null}'),
        )
