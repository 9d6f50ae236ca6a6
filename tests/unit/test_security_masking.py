"""Masking beyond the obvious (issue 13): ID numbers written with spaces or hyphens, account
numbers in groups of four, names in free text after a name key or label; and, as properties,
that nothing else in the text changes."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.common import make_citizen_id
from schemas.pii import mask_value

_ID = st.builds(
    make_citizen_id,
    st.sampled_from(["110105", "360402", "441900", "540102"]),
    st.dates(min_value=date(1930, 1, 1), max_value=date(2020, 12, 31)),
    st.integers(min_value=1, max_value=999),
)
_HAN_NAME = st.text(alphabet="张王李赵刘陈杨黄周吴伟芳娜敏静丽强磊军洋勇艳杰涛明超", min_size=2, max_size=4)

# Text that holds no personal data: words, short numbers joined by what is not a space or hyphen,
# UUIDs, timestamps, agency codes, Chinese words that are not name labels.
_SAFE_PIECE = st.one_of(
    st.sampled_from(
        [
            "case", "state", "awaiting_form", "fen", " ", ", ", "; ", "=", ":", "/", "(", ")", "'",
            "6f1c1a52-4a43-4a4e-9d53-0b1f64f0a002", "2024-03-01T09:30:00+08:00", "110000", "440300",
            "联系函", "信息表", "余额", "已办结", "转出地", "amqp://host:5672/v", "queue_name=jiexu",
            "name=jiexu-agent-1",
        ]
    ),
    # Numbers of up to 12 digits, never next to another number (that would make a longer run).
    st.integers(min_value=0, max_value=10**12 - 1).map(lambda n: f"[{n}]"),
)
# Pieces joined by "|": digits of two pieces never make one longer run (which would be masked as
# an account number, rightly).
_SAFE_TEXT = st.lists(_SAFE_PIECE, max_size=30).map("|".join)


def _spaced(id_number: str, cuts: list[int], separator: str) -> str:
    out, last = [], 0
    for cut in sorted(set(cuts)):
        out.append(id_number[last:cut])
        last = cut
    out.append(id_number[last:])
    return separator.join(part for part in out if part)


@settings(max_examples=300)
@given(_SAFE_TEXT)
def test_text_without_personal_data_is_left_exactly_as_it_is(text: str) -> None:
    assert mask_value(text) == text


@settings(max_examples=300)
@given(
    _SAFE_TEXT,
    _SAFE_TEXT,
    _ID,
    st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=6),
    st.sampled_from([" ", "-"]),
)
def test_an_id_number_written_with_spaces_or_hyphens_is_masked_and_nothing_else_changes(
    before: str, after: str, id_number: str, cuts: list[int], separator: str
) -> None:
    written = _spaced(id_number, cuts, separator)
    masked = mask_value(f"{before} {written} {after}")
    assert masked == f"{mask_value(before)} {id_number[:6]}********{id_number[-1]} {mask_value(after)}"
    assert id_number[6:14] not in masked.replace(" ", "").replace("-", "")


@settings(max_examples=200)
@given(
    _SAFE_TEXT,
    _SAFE_TEXT,
    _HAN_NAME,
    st.sampled_from(["name='{}'", '"account_name": "{}"', "name={}", "姓名：{}", "户名 {}", "参保人{}"]),
)
def test_a_name_after_a_name_key_or_label_is_masked_and_nothing_else_changes(
    before: str, after: str, name: str, form: str
) -> None:
    written = form.format(name)
    masked = mask_value(f"{before} {written} {after}")
    assert masked == f"{before} {form.format(name[0] + '*' * (len(name) - 1))} {after}"


def test_card_numbers_in_groups_of_four_are_masked() -> None:
    assert mask_value("paid to 6222 0212 3456 7890 123.") == "paid to 6222****0123."
    assert mask_value("paid to 6222-0212-3456-7890.") == "paid to 6222****7890."


def test_dates_times_and_phone_numbers_with_hyphens_stay() -> None:
    for text in ("2024-03-01 09:30:00 to 2024-03-02", "0755-12393", "010-12393 转 8001"):
        assert mask_value(text) == text
