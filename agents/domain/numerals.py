"""RMB amounts in Chinese capital numerals (大写金额) from integer fen, as banks and vouchers write them.

The rules are those of the People's Bank of China for filling in bills and settlement vouchers
(《正确填写票据和结算凭证的基本规定》, annex to 《支付结算办法》, 银发〔1997〕393号):

- digits 零壹贰叁肆伍陆柒捌玖, units 拾佰仟万亿, then 元角分; every 拾 carries its digit
  (10 is 壹拾, never 拾 alone);
- 整 (the rule allows 正 too; we always write 整) follows 元 when the amount has no 角 and no 分;
  after 角 "可以不写" — **we write it** (壹仟零肆元伍角整), so that 整 appears exactly when there are
  no 分; after 分 never;
- a zero between non-zero digits is written 零 (¥1,409.50 壹仟肆佰零玖元伍角整); a run of zeros is one
  零 (¥6,007.14 陆仟零柒元壹角肆分);
- when the 万 place or the 元 place is 0 with a non-zero digit after it, the rule allows one 零 or
  none. We take the first of the rule's own examples each time: **no 零 after 万** when the 仟 place
  is non-zero (¥107,000.53 壹拾万柒仟元零伍角叁分), **零 after 元** when the 元 place is 0 and 角 or
  分 follow (¥1,680.32 壹仟陆佰捌拾元零叁角贰分); that is, the integer part is read as the number is
  spoken (a whole group of four zeros, or zeros at a group's head after a non-zero group, give one 零),
  and the fraction gets its own 零 when it follows a 0 元 place;
- 角 0 and 分 non-zero: 零 after 元 (¥16,409.02 壹万陆仟肆佰零玖元零贰分; ¥325.04 叁佰贰拾伍元零肆分).

Amounts below one yuan have no 元 part (¥0.50 伍角整, ¥0.05 伍分); zero is 零元整.
The words carry no "人民币" prefix: a voucher prints that before the field (render it there).

Range: 0 to `MAX_CAPITAL_FEN` (999,999,999,999.99 yuan, the largest with units up to 仟亿).
"""

from __future__ import annotations

__all__ = ["CAPITAL_CHARACTERS", "MAX_CAPITAL_FEN", "capital_amount", "format_yuan"]

_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_PLACES = ("", "拾", "佰", "仟")
_GROUPS = ("", "万", "亿")

MAX_CAPITAL_FEN = 10**14 - 1
"""The largest amount `capital_amount` writes: 999,999,999,999.99 yuan (9,999 亿 and change)."""

CAPITAL_CHARACTERS = frozenset(_DIGITS + "拾佰仟万亿元角分整")
"""Every character `capital_amount` may use."""


def _group(value: int) -> str:
    """0 < value < 10000, read as a four-place group: zeros inside give one 零, trailing ones none."""
    text: list[str] = []
    pending_zero = False
    for place in range(3, -1, -1):
        digit = value // 10**place % 10
        if digit == 0:
            pending_zero = bool(text)
            continue
        if pending_zero:
            text.append("零")
            pending_zero = False
        text.append(_DIGITS[digit] + _PLACES[place])
    return "".join(text)


def _integer(yuan: int) -> str:
    """The yuan part, 0 < yuan < 10**12, groups of four places joined by 万 and 亿."""
    groups = [yuan // 10**(4 * index) % 10**4 for index in range(len(_GROUPS))]
    text: list[str] = []
    skipped = False  # a whole group of zeros since the last group written
    for index in range(len(_GROUPS) - 1, -1, -1):
        value = groups[index]
        if value == 0:
            skipped = bool(text)
            continue
        # A group's trailing zeros are not read (壹拾万柒仟); a skipped group or a group's leading
        # zeros are, once (壹亿零壹仟, 壹拾万零壹拾).
        if text and (skipped or value < 1000):
            text.append("零")
        text.append(_group(value) + _GROUPS[index])
        skipped = False
    return "".join(text)


def capital_amount(fen: int) -> str:
    """``fen`` (integer fen, 0 to `MAX_CAPITAL_FEN`) in capital numerals, e.g. 100450 → 壹仟零肆元伍角整.

    Raises ``ValueError`` for a negative amount, one beyond the range, or a non-integer.
    """
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise ValueError(f"an amount is integer fen, not {type(fen).__name__}")
    if not 0 <= fen <= MAX_CAPITAL_FEN:
        raise ValueError(f"amount must be 0 to {MAX_CAPITAL_FEN} fen")
    yuan, jiao, cents = fen // 100, fen // 10 % 10, fen % 10
    if fen == 0:
        return "零元整"
    text = ""
    if yuan:
        text = _integer(yuan) + "元"
        if (yuan % 10 == 0 and (jiao or cents)) or (jiao == 0 and cents):
            text += "零"
    if jiao:
        text += _DIGITS[jiao] + "角"
    if cents:
        return text + _DIGITS[cents] + "分"
    return text + "整"


def format_yuan(fen: int) -> str:
    """``fen`` in figures with thousands separators and two decimals: 100450 → ``¥1,004.50``."""
    if isinstance(fen, bool) or not isinstance(fen, int) or fen < 0:
        raise ValueError("an amount is a non-negative integer of fen")
    return f"¥{fen // 100:,}.{fen % 100:02d}"
