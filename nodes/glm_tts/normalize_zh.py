"""Chinese text normalisation of numbers, dates, times, money, units and maths symbols.

Our own stand-in for WeTextProcessing's Chinese normaliser (which needs pynini): the same readings for
the common patterns, chosen in WeText's order of preference (e.g. 3-, 5-, 8- and 11-digit runs are read
digit by digit with 一 as 幺, 2- and 4-digit years before 年 digit by digit, other integers as numbers).
"""

from __future__ import annotations

import re

DIGITS = "零一二三四五六七八九"
FULL_TO_HALF_EXTRA = {"。": ".", "“": '"', "”": '"'}
FULLWIDTH_SKIP = {"［", "］"}

_ZH_UNIT_TEXT = (
    "年来 年前 年后 年内 年之前 年之后 平方 立方 公里 票 多 余 几 集 档 具 趟 人 篇 帧 "
    "把 封 艘 套 段 号 匹 张 座 回 场 尾 条 个 首 阙 阵 网 炮 顶 丘 棵 只 支 袭 "
    "辆 挑 担 颗 壳 窠 曲 墙 群 腔 砣 客 贯 扎 捆 刀 令 手 罗 坡 山 岭 江 溪 钟 "
    "队 单 双 对 口 头 脚 板 跳 枝 件 贴 针 线 管 名 位 身 堂 课 本 页 家 户 层 "
    "丝 毫 厘 分 钱 两 斤 铢 石 钧 锱 忽 克 寸 尺 丈 里 寻 常 铺 程 米 撮 勺 合 "
    "升 斗 盘 碗 碟 叠 桶 笼 盆 盒 杯 斛 锅 簋 篮 罐 瓶 壶 卮 盏 箩 箱 煲 啖 袋 "
    "钵 月 日 季 刻 时 小时 周 天 秒 旬 纪 岁 世 更 夜 春 夏 秋 冬 代 伏 辈 丸 泡 "
    "粒 幢 堆 根 道 面 片 块 架 千米 分米 厘米 毫米 微米 纳米 亿 千万 百万 万 千 百 "
    "元 吨 度 摄氏度 字 兆 "
)
ZH_UNITS = tuple(_ZH_UNIT_TEXT.split())
EN_UNITS = {
    "°C": "摄氏度", "℃": "摄氏度", "°F": "华氏度", "℉": "华氏度", "km²": "平方千米", "km2": "平方千米",
    "m²": "平方米", "m2": "平方米", "m³": "立方米", "m3": "立方米", "cm²": "平方厘米", "cm": "厘米",
    "mm": "毫米", "km": "公里", "kg": "千克", "mg": "毫克", "ml": "毫升", "ms": "毫秒", "ns": "纳秒",
    "μs": "微秒", "nm": "纳米", "μm": "微米", "min": "分钟", "mph": "英里每小时", "kw": "千瓦", "kW": "千瓦",
    "kwh": "千瓦时", "hz": "赫兹", "khz": "千赫兹", "mhz": "兆赫兹", "ghz": "吉赫兹", "gb": "吉字节",
    "tb": "太字节", "mbps": "兆比特每秒", "db": "分贝", "lb": "磅", "lbs": "磅", "oz": "盎司", "ft": "英尺",
    "mi": "英里", "yd": "码", "ha": "公顷", "pa": "帕斯卡", "kpa": "千帕", "mpa": "兆帕", "v": "伏特",
    "mv": "毫伏", "mw": "毫瓦", "h": "小时", "s": "秒", "m": "米", "g": "克", "°": "度",
}
CURRENCIES = {
    "$": "美元", "¥": "元", "￥": "元", "£": "英镑", "￡": "英镑", "€": "欧元", "₹": "印度卢比", "₽": "卢布",
    "฿": "泰铢", "USD": "美元", "CNY": "人民币", "RMB": "人民币", "HKD": "港元", "JPY": "日元", "EUR": "欧元",
    "GBP": "英镑", "KRW": "韩元", "CAD": "加元", "AUD": "澳元",
}
OPERATORS = {">=": "大于等于", "<=": "小于等于", "×": "乘", "+": "加", "=": "等于", "÷": "除", "≥": "大于等于",
             "≤": "小于等于"}
BETWEEN_NUMBERS = {**OPERATORS, "~": "到", ":": "比", "<": "小于", ">": "大于", "-": "减"}
NOON = {"am": "上午", "a.m.": "上午", "pm": "下午", "p.m.": "下午"}


def read_digits(s: str, phone: bool = False) -> str:
    out = "".join(DIGITS[int(c)] for c in s)
    return out.replace("一", "幺") if phone else out


def _under_ten_thousand(n: int, teen: bool) -> str:
    """1 <= n <= 9999 with WeText's zeros (1001 一千零一, 1010 一千零一十); `teen` reads 10-19 as 十X."""
    thousands, hundreds, tens, ones = n // 1000, n // 100 % 10, n // 10 % 10, n % 10
    parts: list[str] = []
    if thousands:
        parts.append(DIGITS[thousands] + "千")
    if hundreds:
        parts.append(DIGITS[hundreds] + "百")
    elif thousands and (tens or ones):
        parts.append("零")
    if tens:
        parts.append(("" if teen and n < 20 else DIGITS[tens]) + "十")
    elif hundreds and ones:
        parts.append("零")
    if ones:
        parts.append(DIGITS[ones])
    return "".join(parts)


def read_integer(n: int) -> str:
    """Chinese reading of 0 <= n < 10^8, with 二 before 百/千/万 spoken as 两."""
    if n == 0:
        return "零"
    high, low = divmod(n, 10000)
    if high:
        text = _under_ten_thousand(high, teen=True) + "万"
        if low:
            text += ("零" if low < 1000 else "") + _under_ten_thousand(low, teen=False)
    else:
        text = _under_ten_thousand(low, teen=True)
    # WeText rewrites every 二百/二千/二万, even inside 二十二万; we keep 二 after 十 (a correct reading).
    return re.sub(r"(?<!十)二(?=[百千万])", "两", text)


def read_number(s: str) -> str | None:
    """A decimal string like '12.50' -> 十二点五零; None when WeText's number grammar would not take it."""
    int_part, _, frac = s.partition(".")
    if len(int_part) > 8 or (len(int_part) > 1 and int_part[0] == "0"):
        return None
    text = read_integer(int(int_part))
    return text + "点" + read_digits(frac) if frac else text


def _is_phone_length(n: int) -> bool:
    """Lengths WeText reads as digit strings: sums of 3-, 5- and 11-digit groups."""
    return any(n - 11 * c - 5 * b >= 0 and (n - 11 * c - 5 * b) % 3 == 0
               for c in range(n // 11 + 1) for b in range((n - 11 * c) // 5 + 1))


def read_standalone(s: str) -> str:
    if "." not in s and _is_phone_length(len(s)):
        return read_digits(s, phone=True)
    reading = read_number(s)
    return reading if reading is not None else read_digits(s)


NUM = r"\d+(?:\.\d+)?"
_unit_alts = "|".join(re.escape(u) for u in sorted([*ZH_UNITS, *EN_UNITS], key=len, reverse=True))
_currency_alts = "|".join(re.escape(c) for c in sorted(CURRENCIES, key=len, reverse=True))
_op_alts = "|".join(re.escape(o) for o in sorted(BETWEEN_NUMBERS, key=len, reverse=True))
_lone_op_alts = "|".join(re.escape(o) for o in sorted(OPERATORS, key=len, reverse=True))

PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("date", re.compile(r"(\d{4})([/.])(\d{1,2})\2(\d{1,2})(?!\d)")),
    ("time", re.compile(r"(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?(?!\d)\s?(a\.m\.|p\.m\.|am|pm|AM|PM)?")),
    ("money", re.compile(rf"({_currency_alts}) ?({NUM})")),
    ("fraction", re.compile(rf"({NUM}) ?/ ?({NUM})")),
    ("percent", re.compile(rf"({NUM})%")),
    ("generation", re.compile(r"(?<!\d)([05-9]0|00|10)后")),
    ("annual", re.compile(r"(?<!\d)(\d{4}|\d{2})(年度|年|赛季)(?!来|前|后|内|之)")),
    ("measure", re.compile(rf"(?:({NUM}) ?({_unit_alts})? ?[~到])?({NUM}) ?({_unit_alts})(?![a-zA-Z])")),
    ("math", re.compile(rf"{NUM}(?: ?(?:{_op_alts}) ?{NUM})+")),
    ("number", re.compile(NUM)),
    ("operator", re.compile(_lone_op_alts)),
]


def _unit(u: str) -> str:
    return EN_UNITS.get(u, u)


def _measure_number(s: str, unit: str) -> str:
    text = read_number(s) or read_digits(s)
    if text.startswith("二") and unit not in ("月", "号"):
        text = "两" + text[1:]
    return text


def _hour(h: str) -> str:
    n = int(h)
    return "零点" if n == 0 else ("两" if n == 2 else read_integer(n)) + "点"


def _render(kind: str, m: re.Match[str]) -> str | None:
    g = m.groups()
    if kind == "date":
        month, day = int(g[2]), int(g[3])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return None
        return read_digits(g[0]) + "年" + read_integer(month) + "月" + read_integer(day) + "日"
    if kind == "time":
        h, mi, sec = int(g[0]), int(g[1]), g[2]
        if h > 24 or mi > 59 or (sec is not None and int(sec) > 59):
            return None
        minute = "" if mi == 0 else ("零" + DIGITS[mi] if mi < 10 else read_integer(mi)) + "分"
        second = "" if not sec or int(sec) == 0 else read_integer(int(sec)) + "秒"
        noon = NOON.get(g[3].lower(), "") if g[3] else ""
        return noon + _hour(g[0]) + minute + second
    if kind == "money":
        amount = read_number(g[1])
        return None if amount is None else amount + CURRENCIES[g[0]]
    if kind == "fraction":
        num, den = read_number(g[0]), read_number(g[1])
        return None if num is None or den is None else den + "分之" + num
    if kind == "percent":
        pct = read_number(g[0])
        return None if pct is None else "百分之" + pct
    if kind == "generation":
        return read_digits(g[0]) + "后"
    if kind == "annual":
        return read_digits(g[0]) + g[1]
    if kind == "measure":
        unit = _unit(g[3])
        first = "" if g[0] is None else _measure_number(g[0], g[1] or g[3]) + (_unit(g[1]) if g[1] else "") + "到"
        return first + _measure_number(g[2], g[3]) + unit
    if kind == "math":
        pieces = re.split(rf" ?({_op_alts}) ?", m.group(0))
        words = [read_number(p) if i % 2 == 0 else BETWEEN_NUMBERS[p] for i, p in enumerate(pieces)]
        return None if any(w is None for w in words) else "".join(words)  # type: ignore[arg-type]
    if kind == "number":
        return read_standalone(m.group(0))
    return OPERATORS[m.group(0)]


def full_to_half(text: str) -> str:
    out = []
    for ch in text:
        if ch in FULL_TO_HALF_EXTRA:
            out.append(FULL_TO_HALF_EXTRA[ch])
        elif 0xFF01 <= ord(ch) <= 0xFF5E and ch not in FULLWIDTH_SKIP:
            out.append(chr(ord(ch) - 0xFEE0))
        else:
            out.append(ch)
    return "".join(out)


def normalize_zh(text: str) -> str:
    """Spell out the numeric and symbolic tokens of Chinese text, then fold full-width characters."""
    text = re.sub(r"[０-９]", lambda m: chr(ord(m.group(0)) - 0xFEE0), text)
    out, pos = [], 0
    while pos < len(text):
        for kind, pattern in PATTERNS:
            m = pattern.match(text, pos)
            if m and m.end() > pos:
                rendered = _render(kind, m)
                if rendered is not None:
                    out.append(rendered)
                    pos = m.end()
                    break
        else:
            out.append(text[pos])
            pos += 1
    return full_to_half("".join(out))
