"""Amounts in Chinese capital numerals (大写), checked against the People's Bank of China's rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.domain.numerals import CAPITAL_CHARACTERS, MAX_CAPITAL_FEN, capital_amount, format_yuan

_DIGIT = {c: n for n, c in enumerate("零壹贰叁肆伍陆柒捌玖")}
_PLACE = {"拾": 10, "佰": 100, "仟": 1000}
_GROUP = {"万": 10**4, "亿": 10**8}


def parse_capital(text: str) -> int:
    """The inverse, written apart from the code under test: capital numerals back to fen."""
    body = text.removesuffix("整")
    integer, _, fraction = body.rpartition("元") if "元" in body else ("", "", body)
    fen = 0
    fraction = fraction.removeprefix("零")
    for unit, worth in (("角", 10), ("分", 1)):
        if unit in fraction:
            numeral, fraction = fraction.split(unit, 1)
            assert len(numeral) == 1, text
            fen += _DIGIT[numeral] * worth
    assert fraction == "", text
    total, section, digit = 0, 0, 0
    for char in integer:
        if char in _DIGIT:
            digit = _DIGIT[char]
        elif char in _PLACE:
            assert digit, f"{char} without its digit in {text}"
            section += digit * _PLACE[char]
            digit = 0
        elif char in _GROUP:
            worth = _GROUP[char]
            total = (total + section + digit) * worth if worth > total else total + (section + digit) * worth
            section = digit = 0
        else:
            raise AssertionError(f"unexpected {char} in {text}")
    return (total + section + digit) * 100 + fen


# Each case is an example of the rules (银发〔1997〕393号 annex) or follows one of them directly.
CASES = [
    (0, "零元整"),
    (1, "壹分"),
    (10, "壹角整"),
    (11, "壹角壹分"),
    (100, "壹元整"),
    (1_000, "壹拾元整"),  # 拾 always carries its digit
    (1_005, "壹拾元零伍分"),  # 角 0, 分 not: 零 after 元
    (1_050, "壹拾元零伍角整"),  # 元 place 0, then 角: 零 after 元 (first form of the rule)
    (32_504, "叁佰贰拾伍元零肆分"),  # the rule's own example
    (100_450, "壹仟零肆元伍角整"),  # zeros between digits: one 零; 整 after 角 (our choice)
    (140_950, "壹仟肆佰零玖元伍角整"),  # the rule's own example
    (168_032, "壹仟陆佰捌拾元零叁角贰分"),  # the rule's own example (first form)
    (600_714, "陆仟零柒元壹角肆分"),  # the rule's own example: a run of zeros is one 零
    (1_640_902, "壹万陆仟肆佰零玖元零贰分"),  # the rule's own example
    (10_000_000, "壹拾万元整"),
    (10_001_000, "壹拾万零壹拾元整"),
    (10_700_053, "壹拾万柒仟元零伍角叁分"),  # the rule's own example (first form)
    (10_000_100, "壹拾万零壹元整"),
    (100_010_000, "壹佰万零壹佰元整"),
    (1_000_000_000, "壹仟万元整"),
    (1_000_100_000, "壹仟万壹仟元整"),  # a group's trailing zeros are not read
    (1_010_101_010, "壹仟零壹拾万壹仟零壹拾元零壹角整"),
    (9_999_999_999, "玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分"),  # 100,000,000 yuan less 1 fen
    (10_000_000_000, "壹亿元整"),
    (10_000_000_100, "壹亿零壹元整"),
    (10_001_000_000, "壹亿零壹万元整"),
    (10_010_000_000, "壹亿零壹拾万元整"),
    (MAX_CAPITAL_FEN, "玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分"),
]


@pytest.mark.parametrize(("fen", "words"), CASES)
def test_capital_amount_follows_the_rules(fen: int, words: str) -> None:
    assert capital_amount(fen) == words
    assert parse_capital(words) == fen


@pytest.mark.parametrize("bad", [-1, MAX_CAPITAL_FEN + 1, 1.5, True, "100"])
def test_capital_amount_refuses_what_is_not_an_amount_in_range(bad: object) -> None:
    with pytest.raises(ValueError):
        capital_amount(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=9_999_999_999))
def test_every_amount_up_to_a_hundred_million_yuan_reads_back(fen: int) -> None:
    words = capital_amount(fen)
    assert set(words) <= CAPITAL_CHARACTERS
    assert parse_capital(words) == fen
    assert "亿" not in words
    assert "零零" not in words
    assert re.search(r"零[元万亿角分整]", words) is None or words == "零元整"
    assert words.endswith("整") == (fen % 10 == 0)
    assert re.search(r"(?<![壹贰叁肆伍陆柒捌玖])[拾佰仟]", words) is None


@given(st.integers(min_value=0, max_value=MAX_CAPITAL_FEN))
def test_every_amount_in_range_reads_back(fen: int) -> None:
    words = capital_amount(fen)
    assert set(words) <= CAPITAL_CHARACTERS
    assert parse_capital(words) == fen


@pytest.mark.parametrize(
    ("fen", "figures"),
    [(0, "¥0.00"), (5, "¥0.05"), (100_450, "¥1,004.50"), (9_999_999_999, "¥99,999,999.99")],
)
def test_format_yuan_writes_figures_with_separators(fen: int, figures: str) -> None:
    assert format_yuan(fen) == figures
