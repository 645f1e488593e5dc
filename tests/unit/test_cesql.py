"""Unit tests of `brokers.cesql` beyond the TCK: precedence, casts, overflow, LIKE, IN, error
kinds and zero values, short-circuits, compile-time checks and limits.

Most tests are tables of (expression, attributes) -> (value, error kinds), read through `ev`.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from types import MappingProxyType
from typing import Any

import pytest

from brokers.cesql import CesqlError, CesqlParseError, EvalResult, Expression, parse
from brokers.cesql.like import like_matcher
from brokers.cesql.parser import MAX_NESTING

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "42",
    "source": "https://example.com/src",
    "type": "com.example.order.created",
    "subject": "Order 7",
    "myint": 10,
    "mybool": True,
    "mystr": "abc",
}


def ev(expression: str, attributes: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    result = parse(expression).evaluate(EVENT if attributes is None else attributes)
    return result.value, [error.kind for error in result.errors]


def check(expression: str, value: Any, kinds: list[str]) -> None:
    actual_value, actual_kinds = ev(expression)
    assert (actual_value, type(actual_value), actual_kinds) == (value, type(value), kinds)


# -- API


def test_api_shapes() -> None:
    expression = parse("type = 'com.example.order.created' AND EXISTS subject")
    assert isinstance(expression, Expression)
    assert (
        str(expression)
        == expression.text
        == "type = 'com.example.order.created' AND EXISTS subject"
    )
    assert expression.static_errors == ()
    assert expression.evaluate(EVENT) == EvalResult(True, ())
    assert expression.matches(EVENT) is True
    assert expression.matches({"type": "com.example.order.created"}) is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        expression.text = "x"  # type: ignore[misc]
    assert expression == parse(expression.text)
    assert len({expression, parse(expression.text), parse("TRUE")}) == 2
    result = parse("1 / 0").evaluate({})
    assert result == EvalResult(0, (CesqlError("math", "division by zero"),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.value = 1  # type: ignore[misc]


def test_attributes_can_be_any_mapping_and_are_not_mutated() -> None:
    attributes = MappingProxyType(dict(EVENT))
    assert parse("subject = 'Order 7' AND myint > 5").matches(attributes)
    plain = dict(EVENT)
    parse("CONCAT(subject, 'x') = 'x' OR LENGTH(type) > 0").evaluate(plain)
    assert plain == EVENT


def test_parse_error_carries_message_and_position() -> None:
    with pytest.raises(CesqlParseError) as caught:
        parse("subject = 'unterminated")
    assert caught.value.position == 10
    assert caught.value.message == "unterminated string literal"
    assert caught.value.kind == "parse"
    assert isinstance(caught.value, ValueError)
    assert "position 10" in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "position"),
    [
        ("", 0),
        ("   ", 3),
        ("ABC(", 4),
        ("(1 + 2", 6),
        ("1 + 2)", 5),
        ("a =", 3),
        ("a ! b", 2),
        ("a NOT b", 6),
        ("x LIKE 123", 7),
        ("x LIKE y", 7),
        ("x IN ()", 6),
        ("x IN 'a'", 5),
        ("2147483648", 0),
        ("-2147483649", 1),
        ("99999999999999999999999", 0),
        ("+x", 0),
        ("EXISTS 'a'", 7),
        ("EXISTS my_ext", 7),
        ("my_ext = 1", 0),
        ("F1(2)", 0),
        ("1.5", 1),
        ("'a' 'b'", 4),
        ("AND", 0),
        ("a = = b", 4),
    ],
)
def test_parse_errors(expression: str, position: int) -> None:
    with pytest.raises(CesqlParseError) as caught:
        parse(expression)
    assert caught.value.position == position, caught.value.message


# -- literals and names


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2147483647", 2147483647),
        ("-2147483648", -2147483648),
        ("+5", 5),
        ("007", 7),
        ("-0", 0),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\"b'", 'a"b'),
        ("'back\\slash'", "back\\slash"),
        ("'tab\\t'", "tab\\t"),
        ("'a\\\\'", "a\\\\"),
        ("'émoji 🎉'", "émoji 🎉"),
        ("tRuE", True),
        ("false", False),
    ],
)
def test_literals(expression: str, value: Any) -> None:
    check(expression, value, [])


def test_names_are_case_insensitive() -> None:
    check("tRuE aNd NoT FaLsE", True, [])
    check("EXISTS SUBJECT and Type LiKe 'com.%' AND lower('A') = 'a'", True, [])
    check("MyInt", 10, [])
    check("digits123 = 1", False, ["missingAttribute"])
    check("123abc", False, ["missingAttribute"])  # attribute names may start with a digit


def test_whitespace() -> None:
    check("\tsubject\r\n=\n'Order 7'  ", True, [])
    check("LENGTH ( 'abc' )", 3, [])


# -- precedence (spec 3.6)


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 2 - 3", 5),  # left to right
        ("100 / 10 / 5", 2),
        ("2 * 3 % 4", 2),
        ("7 - -2", 9),
        ("5 -3", 2),
        ("-4 + 1", -3),  # unary minus binds tighter than +
        ("- myint * 2", -20),
        ("1 + 1 = 2", True),
        ("2 = 1 + 1", True),
        ("1 < 2 = TRUE", True),
        # AND, OR and XOR share one level, evaluated left to right (SQL would say true here,
        # the SDKs' right-associative grammar too):
        ("TRUE OR FALSE AND FALSE", False),
        ("FALSE AND TRUE OR TRUE", True),  # the SDKs say false
        ("TRUE XOR TRUE AND FALSE", False),
        ("TRUE OR (FALSE AND FALSE)", True),
        # NOT binds tighter than comparisons: (NOT 0) = 5 is TRUE = 5, i.e. 1 = 5
        ("NOT 0 = 5", False),
        ("NOT (0 = 5)", True),
        # LIKE and IN bind tighter than binary operators
        ("'ab' LIKE 'a%' = TRUE", True),
        ("3 = 2 IN (2)", True),  # 3 = (2 IN (2)): 3 cast to Boolean is TRUE
        ("NOT EXISTS nothing", True),
        ("NOT NOT TRUE", True),
        ("--myint", 10),
    ],
)
def test_precedence(expression: str, value: Any) -> None:
    check(expression, value, [])


def test_not_applies_before_like() -> None:
    # (NOT type) LIKE ...: the type does not cast to Boolean. Write NOT (type LIKE ...).
    check("NOT type LIKE 'com.%'", False, ["cast"])
    check("NOT (type LIKE 'com.%')", False, [])
    check("type NOT LIKE 'com.%'", False, [])


# -- casts (spec 3.7)


@pytest.mark.parametrize(
    ("expression", "value", "kinds"),
    [
        ("'5' + 3", 8, []),
        ("'+5' + 0", 5, []),
        ("'-5' + 0", -5, []),
        ("'0005' + 0", 5, []),
        ("'-2147483648' + 0", -2147483648, []),
        ("'2147483648' + 0", 0, ["cast"]),
        ("' 5' + 0", 0, ["cast"]),
        ("'5_0' + 0", 0, ["cast"]),
        ("'\u0665' + 0", 0, ["cast"]),  # an Arabic-Indic 5: Python's int() would take it
        ("'' + 0", 0, ["cast"]),
        ("'-' + 0", 0, ["cast"]),
        ("'1e3' + 0", 0, ["cast"]),
        ("TRUE + TRUE", 2, []),
        ("'TRUE' = TRUE", True, []),
        ("TRUE = 'TRUE'", False, []),  # the right operand's type wins: 'true' = 'TRUE'
        ("TRUE = 'true' AND FALSE = 'false'", True, []),
        ("1 = '1'", True, []),
        ("'01' = 1", True, []),
        ("1 = '01'", False, []),
        ("'abc' = 1", False, ["cast"]),
        ("'yes' AND TRUE", False, ["cast"]),
        ("2 AND -1", True, []),
        ("0 OR 0", False, []),
        ("myint = '10'", True, []),
        ("myint = 10", True, []),
        ("myint + '5'", 15, []),
        ("mybool = 'TRUE'", False, []),
        ("mybool = TRUE", True, []),
        ("mybool AND myint", True, []),
        ("mystr < 5", False, ["cast"]),
        ("INT('-17')", -17, []),
        ("INT(FALSE)", 0, []),
        ("INT('x')", 0, ["cast"]),
        ("BOOL('FaLsE')", False, []),
        ("BOOL(-3)", True, []),
        ("BOOL('1')", False, ["cast"]),
        ("STRING(-5)", "-5", []),
        ("STRING(TRUE)", "true", []),
        ("STRING(myint)", "10", []),
        ("IS_INT('12')", True, []),
        ("IS_INT('x')", False, []),
        ("IS_INT(TRUE)", True, []),
        ("IS_BOOL('True')", True, []),
        ("IS_BOOL('1')", False, []),
        ("IS_BOOL(7)", True, []),
        ("is_int(mystr)", False, []),
    ],
)
def test_casts(expression: str, value: Any, kinds: list[str]) -> None:
    check(expression, value, kinds)


def test_attribute_values_of_other_types_are_strings() -> None:
    attributes: dict[str, Any] = {"ratio": 1.5, "raw": b"x"}
    assert ev("ratio = '1.5'", attributes) == (True, [])
    assert ev("LENGTH(raw) > 0", attributes) == (True, [])


# -- integers


@pytest.mark.parametrize(
    ("expression", "value", "kinds"),
    [
        ("-7 / 2", -3, []),  # truncated towards zero
        ("7 / -2", -3, []),
        ("-7 % 2", -1, []),  # the sign of the dividend
        ("7 % -2", 1, []),
        ("-2147483648 % -1", 0, []),
        # overflow: a math error, the value clamped to 32 bits (as spec 3.5.2 does for ABS)
        ("2147483647 + 1", 2147483647, ["math"]),
        ("-2147483648 - 1", -2147483648, ["math"]),
        ("65536 * 65536", 2147483647, ["math"]),
        ("-65536 * 65536", -2147483648, ["math"]),
        ("-2147483648 / -1", 2147483647, ["math"]),
        ("--2147483648", 2147483647, ["math"]),
        ("ABS(-2147483648)", 2147483647, ["math"]),
        ("2147483647 + 1 - 1", 0, ["math"]),  # not the root: the zero value
        ("2147483647 + 1 > 0", False, ["math"]),
        ("2147483646 + 1", 2147483647, []),
    ],
)
def test_integer_arithmetic(expression: str, value: Any, kinds: list[str]) -> None:
    check(expression, value, kinds)


def test_overflow_from_attributes() -> None:
    assert ev("-n", {"n": -2147483648}) == (2147483647, ["math"])
    assert ev("n * n", {"n": 50000}) == (2147483647, ["math"])
    assert ev("n * n = 0", {"n": 50000}) == (False, ["math"])


# -- LIKE (spec 3.4.3)


@pytest.mark.parametrize(
    ("text", "pattern", "matches"),
    [
        ("", "", True),
        ("a", "", False),
        ("", "%", True),
        ("anything", "%", True),
        ("", "%%", True),
        ("abc", "a_c", True),
        ("ac", "a_c", False),
        ("aéc", "a_c", True),  # one character, not one byte
        ("a🎉c", "a_c", True),
        ("a\nc", "a_c", True),
        ("a\nc", "a%c", True),
        ("ABC", "abc", False),  # case-sensitive
        ("a%c", "a\\%c", True),
        ("abc", "a\\%c", False),
        ("a_c", "a\\_c", True),
        ("abc", "a\\_c", False),
        ("a\\bc", "a\\bc", True),  # a backslash before anything else is a backslash
        ("a\\%", "a\\\\%", True),  # a backslash, then an escaped %
        ("a\\xyz", "a\\\\%", False),
        ("abc\\", "abc\\", True),
        ("a.c", "a.c", True),
        ("abc", "a.c", False),  # regex characters are literal
        ("(x)*+?[]{}^$|", "(%)*+?[]{}^$|", True),
        ("abab", "%ab", True),
        ("abcab", "ab%ab", True),
        ("ab", "ab%ab", False),  # prefix and suffix cannot overlap
        ("xaybzc", "%a%b%c", True),
        ("xaybzc", "%a%c%b", False),
        ("aXbYb", "a%b_b", True),
        ("aXbY", "a%b_b", False),
        ("aXbYbZb", "a%b_b", True),
        ("abcd", "_%_", True),
        ("a", "_%_", False),
        ("com.github.error", "%.error", True),
        ("https://x", "https://%", True),
        ("ab", "%a_%", True),
        ("ba", "%a_%", False),
    ],
)
def test_like(text: str, pattern: str, matches: bool) -> None:
    assert like_matcher(pattern)(text) is matches
    if pattern.endswith("\\"):
        return  # inside a literal, a final backslash would escape the closing quote
    assert parse(f"t LIKE '{pattern}'").evaluate({"t": text}) == EvalResult(matches)
    assert parse(f"t NOT LIKE '{pattern}'").evaluate({"t": text}) == EvalResult(not matches)


def _reference_like(pattern: str, text: str) -> bool:
    regex, i = "", 0
    while i < len(pattern):
        if pattern[i] == "\\" and pattern[i + 1 : i + 2] in ("%", "_"):
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += {"%": ".*", "_": "."}.get(pattern[i], re.escape(pattern[i]))
        i += 1
    return re.fullmatch(regex, text, re.DOTALL) is not None


def test_like_agrees_with_a_regex_reference() -> None:
    rng = random.Random(20240613)
    for _ in range(5000):
        pattern = "".join(rng.choices("ab%_\\", k=rng.randint(0, 7)))
        text = "".join(rng.choices("ab%_\\", k=rng.randint(0, 9)))
        assert like_matcher(pattern)(text) is _reference_like(pattern, text), (pattern, text)


def test_like_does_not_backtrack() -> None:
    matches = like_matcher("%a%a%a%a%a%a%a%b")
    started = time.perf_counter()
    assert matches("a" * 50_000) is False
    assert matches("a_a" * 10_000) is False
    assert time.perf_counter() - started < 0.5


def test_like_casts_its_operand_and_needs_it() -> None:
    check("myint LIKE '1_'", True, [])
    check("mybool LIKE 'tr%'", True, [])
    check("missing LIKE '%'", False, ["missingAttribute"])


# -- IN, EXISTS


@pytest.mark.parametrize(
    ("expression", "value", "kinds"),
    [
        ("type IN ('a', 'com.example.order.created')", True, []),
        ("type NOT IN ('a', 'b')", True, []),
        ("myint IN ('9', '10')", True, []),  # elements cast to the left operand's type
        ("'10' IN (myint)", True, []),
        ("TRUE IN (1)", True, []),
        ("1 IN ('1', 'x')", True, []),  # stops at the first equal element
        ("1 IN ('x', '1')", False, ["cast"]),
        ("myint IN (mystr, 10)", False, ["cast"]),
        ("mystr IN (myint, 'abc')", True, []),
        ("subject IN (id, type, missing)", False, ["missingAttribute"]),
        ("subject IN ('Order 7', missing)", True, []),
        ("missing IN (1, 2)", False, ["missingAttribute"]),
        ("missing NOT IN (1, 2)", False, ["missingAttribute"]),
        ("1 IN (1/0)", False, ["math"]),
        ("EXISTS subject", True, []),
        ("EXISTS nothing", False, []),
        ("EXISTS ID", True, []),
    ],
)
def test_in_and_exists(expression: str, value: Any, kinds: list[str]) -> None:
    check(expression, value, kinds)


# -- functions


@pytest.mark.parametrize(
    ("expression", "value", "kinds"),
    [
        ("LENGTH('héllo🎉')", 6, []),  # characters, not bytes
        ("LENGTH(myint)", 2, []),
        ("CONCAT('a', 1, TRUE)", "a1true", []),
        ("CONCAT()", "", []),
        ("CONCAT_WS('-', 'a', 'b')", "a-b", []),
        ("CONCAT_WS('-')", "", []),
        ("LOWER('ÀBC')", "àbc", []),
        ("UPPER('straße')", "STRASSE", []),
        ("TRIM('\u00a0\u3000 a b\t\n')", "a b", []),  # Unicode White_Space
        ("TRIM('\x1ca\x1c')", "\x1ca\x1c", []),  # control characters stay
        ("LEFT('abc', 0)", "", []),
        ("RIGHT('abc', 0)", "", []),
        ("RIGHT('abc', 1)", "c", []),
        ("LEFT('abc', -1)", "abc", ["functionEvaluation"]),
        ("RIGHT('abc', -1)", "abc", ["functionEvaluation"]),
        ("SUBSTRING('abc', 3)", "c", []),
        ("SUBSTRING('abc', -3)", "abc", []),
        ("SUBSTRING('abc', 4)", "", ["functionEvaluation"]),
        ("SUBSTRING('abc', 2, 0)", "", []),
        ("SUBSTRING('abc', -2, 5)", "bc", []),
        ("SUBSTRING('abc', 1, -1)", "", ["functionEvaluation"]),
        ("SUBSTRING('', 0)", "", []),
        ("ABS(-5)", 5, []),
        ("LEFT('abc', 'x')", "", ["cast"]),
        ("LENGTH(LEFT('abc', -1))", 0, ["functionEvaluation"]),  # not the root: zero value
    ],
)
def test_builtin_functions(expression: str, value: Any, kinds: list[str]) -> None:
    check(expression, value, kinds)


@pytest.mark.parametrize(
    "expression", ["NOPE(1)", "LENGTH()", "LENGTH('a', 'b')", "SUBSTRING('a')"]
)
def test_missing_functions_are_found_at_parse_time_and_reported_when_evaluated(
    expression: str,
) -> None:
    parsed = parse(expression)
    assert [error.kind for error in parsed.static_errors] == ["missingFunction"]
    assert ev(expression) == (False, ["missingFunction"])


def test_missing_function_does_not_evaluate_its_arguments() -> None:
    assert ev("NOPE(missing, 1/0)") == (False, ["missingFunction"])


# -- errors and zero values (spec 3.3)


@pytest.mark.parametrize(
    ("expression", "value", "kinds"),
    [
        ("missing", False, ["missingAttribute"]),  # type unknown: Boolean (spec 3.2)
        ("LENGTH(missing)", 0, ["missingAttribute"]),
        ("UPPER(missing)", "", ["missingAttribute"]),
        ("missing + 1", 0, ["missingAttribute"]),
        ("NOT missing", False, ["missingAttribute"]),
        ("1 / missing", 0, ["missingAttribute"]),
        ("1 / 0 = 0", False, ["math"]),  # the error propagates: not 0 = 0
        ("'a' + 1", 0, ["cast"]),
        ("-'a'", 0, ["cast"]),
        ("CONCAT('a', missing)", "", ["missingAttribute"]),
        ("missing1 = 1 OR missing2 = 2", False, ["missingAttribute"]),  # fail-fast: one error
    ],
)
def test_errors_yield_the_zero_value(expression: str, value: Any, kinds: list[str]) -> None:
    check(expression, value, kinds)


def test_matches_needs_boolean_true_and_no_error() -> None:
    assert parse("EXISTS subject").matches(EVENT)
    assert not parse("'true'").matches(EVENT)
    assert not parse("1").matches(EVENT)
    assert not parse("mybool AND missing").matches(EVENT)
    assert not parse("NOPE()").matches(EVENT)
    assert parse("mybool").matches(EVENT)
    assert not parse("mybool").matches({})


# -- short-circuits (spec 3.4.2)


@pytest.mark.parametrize(
    ("expression", "value", "kinds"),
    [
        ("FALSE AND missing", False, []),
        ("TRUE OR missing", True, []),
        ("TRUE AND missing", False, ["missingAttribute"]),
        ("FALSE OR missing", False, ["missingAttribute"]),
        ("TRUE XOR missing", False, ["missingAttribute"]),  # XOR needs both operands
        ("mybool AND TRUE AND missing", False, ["missingAttribute"]),
        ("mybool AND FALSE AND missing", False, []),
        ("NOT mybool OR mybool OR missing", True, []),
        ("EXISTS nothing AND nothing = 'x'", False, []),  # the usual guard
        ("EXISTS subject AND subject = 'Order 7'", True, []),
        ("FALSE AND 1 / 0 = 0", False, []),
        ("mystr = 'zzz' AND 1 / 0 = 0", False, []),
        ("mystr = 'abc' AND 1 / 0 = 0", False, ["math"]),
    ],
)
def test_short_circuit(expression: str, value: Any, kinds: list[str]) -> None:
    check(expression, value, kinds)


def test_errors_in_constant_parts_are_known_at_parse_time() -> None:
    assert parse("type = 'x'").static_errors == ()
    assert [e.kind for e in parse("subject = 1 / 0").static_errors] == ["math"]
    assert [e.kind for e in parse("myint < 'abc'").static_errors] == ["cast"]
    assert [e.kind for e in parse("EXISTS a AND NOPE()").static_errors] == ["missingFunction"]
    assert parse("FALSE AND NOPE()").static_errors == ()  # never reached
    # found once, not once per enclosing operator
    assert len(parse("subject = CONCAT(LEFT('a', -1), 'b')").static_errors) == 1


# -- limits


def test_nesting_is_bounded() -> None:
    deep = "(" * (MAX_NESTING - 1) + "1" + ")" * (MAX_NESTING - 1)
    assert parse(deep).evaluate({}) == EvalResult(1)
    assert parse("NOT " * (MAX_NESTING - 2) + "TRUE").evaluate({}).value is True  # even count
    with pytest.raises(CesqlParseError, match="nested"):
        parse("(" * 1000 + "1" + ")" * 1000)
    with pytest.raises(CesqlParseError, match="nested"):
        parse("-" * 1000 + "1")
    with pytest.raises(CesqlParseError, match="nested"):
        parse(" + ".join(["myint"] * 500))


def test_long_and_or_chains_are_flat() -> None:
    clauses = [f"id = '{n}'" for n in range(3000)]
    either = parse(" OR ".join(clauses))
    assert either.matches({"id": "2999"})
    assert not either.matches({"id": "3000"})
    assert parse(" AND ".join(["EXISTS id"] * 3000)).matches({"id": "1"})
