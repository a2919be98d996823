"""A seeded generator of DeepMind-Mathematics-style problems (minipile's DM domain).

`generate_problems(module, seed, count)` returns question/answer pairs in the
textual style of 22 modules of DeepMind's ``mathematics-dataset`` (arithmetic,
algebra, polynomials, calculus, numbers, comparison, measurement). It is pure
Python: ``random.Random`` seeded with strings and exact ``Fraction``/``Decimal``
arithmetic, so the output is identical across processes and machines (the
original package does not run on sympy 1.14 / numpy 2 and is not reproducible
across processes).

The committed minipile corpus contains this generator's output: any change to
what it returns for a given seed changes the corpus (``tests/test_minipile.py``
freezes a known problem and checks the answers against sympy).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction


@dataclass(frozen=True)
class Problem:
    """A question and its answer, in DeepMind Mathematics' textual style."""

    module: str
    question: str
    answer: str


_VARS = "abcdfghjklmnpqrstuvwxyz"  # no e/i (sympy's E and I) and no o (looks like 0)


def fmt_number(x: Fraction | Decimal | int) -> str:
    """DM-style numbers: integers plain, decimals without trailing zeros, else p/q."""
    if isinstance(x, int):
        return str(x)
    if isinstance(x, Decimal):
        text = format(x.normalize(), "f")
        return "0" if text in {"-0", "0"} else text
    if x.denominator == 1:
        return str(x.numerator)
    return f"{x.numerator}/{x.denominator}"


def _decimal_str(x: Fraction) -> str:
    """Exact decimal expansion of a fraction whose denominator divides a power of 10."""
    for k in range(40):
        scaled = x * 10**k
        if scaled.denominator == 1:
            return fmt_number(Decimal(scaled.numerator).scaleb(-k))
    raise ValueError(f"{x} has no finite decimal expansion")


def _rand_decimal(rng: random.Random, lo: int, hi: int, max_dp: int = 3) -> Decimal:
    dp = rng.randint(1, max_dp)
    return Decimal(rng.randint(lo * 10**dp, hi * 10**dp)).scaleb(-dp)


def _rand_value(rng: random.Random, lo: int = -1000, hi: int = 1000) -> Decimal:
    if rng.random() < 0.5:
        return Decimal(rng.randint(lo, hi))
    return _rand_decimal(rng, lo // 10, hi // 10)


def _nonzero(rng: random.Random, lo: int, hi: int) -> int:
    while True:
        value = rng.randint(lo, hi)
        if value:
            return value


def poly_str(coeffs: Sequence[int], var: str) -> str:
    """Format a polynomial (coefficients lowest degree first) in descending powers."""
    terms = []
    for power in range(len(coeffs) - 1, -1, -1):
        c = coeffs[power]
        if c == 0:
            continue
        mono = "" if power == 0 else var if power == 1 else f"{var}**{power}"
        if not mono:
            body = str(abs(c))
        elif abs(c) == 1:
            body = mono
        else:
            body = f"{abs(c)}*{mono}"
        terms.append((c < 0, body))
    if not terms:
        return "0"
    out = ("-" if terms[0][0] else "") + terms[0][1]
    for negative, body in terms[1:]:
        out += (" - " if negative else " + ") + body
    return out


def _terms_str(terms: Sequence[tuple[int, str]]) -> str:
    """Format ``[(coef, var_or_empty), ...]`` in the given order, e.g. ``-3*x + 7 - y``."""
    out = ""
    for k, (c, var) in enumerate(terms):
        body = str(abs(c)) if not var else var if abs(c) == 1 else f"{abs(c)}*{var}"
        if k == 0:
            out = ("-" if c < 0 else "") + body
        else:
            out += (" - " if c < 0 else " + ") + body
    return out or "0"


def _poly_mul(a: Sequence[int], b: Sequence[int]) -> list[int]:
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _poly_eval(coeffs: Sequence[int], x: int) -> int:
    return sum(c * x**k for k, c in enumerate(coeffs))


def _poly_diff(coeffs: Sequence[int]) -> list[int]:
    return [k * c for k, c in enumerate(coeffs)][1:] or [0]


def _rand_poly(rng: random.Random, degree: int, bound: int, density: float = 0.7) -> list[int]:
    coeffs = [rng.randint(-bound, bound) if rng.random() < density else 0 for _ in range(degree)]
    return [*coeffs, _nonzero(rng, -bound, bound)]


def _equation(rng: random.Random, terms: list[tuple[int, str]]) -> str:
    """Spread the terms of ``sum(terms) = 0`` over both sides of an equation."""
    lhs: list[tuple[int, str]] = []
    rhs: list[tuple[int, str]] = []
    for c, var in terms:
        if rng.random() < 0.5:
            lhs.append((c, var))
        else:
            rhs.append((-c, var))
    rng.shuffle(lhs)
    rng.shuffle(rhs)
    return f"{_terms_str(lhs)} = {_terms_str(rhs)}"


def _split_int(rng: random.Random, value: int, pieces: int) -> list[int]:
    out = []
    for _ in range(pieces - 1):
        part = _nonzero(rng, -abs(value) - 10, abs(value) + 10)
        out.append(part)
        value -= part
    return [*out, value]


def _q_add_or_sub(rng: random.Random) -> tuple[str, str]:
    a, b = _rand_value(rng), _rand_value(rng)
    templates = [
        ("What is {a} + {b}?", a + b),
        ("Calculate {a} + {b}.", a + b),
        ("Add {a} and {b}.", a + b),
        ("Sum {a} and {b}.", a + b),
        ("Total of {a} and {b}.", a + b),
        ("Put together {a} and {b}.", a + b),
        ("{a} + {b}", a + b),
        ("What is {a} - {b}?", a - b),
        ("Calculate {a} - {b}.", a - b),
        ("Subtract {b} from {a}.", a - b),
        ("What is {a} minus {b}?", a - b),
        ("What is {a} take away {b}?", a - b),
        ("{a} - {b}", a - b),
    ]
    template, answer = rng.choice(templates)
    return template.format(a=fmt_number(a), b=fmt_number(b)), fmt_number(answer)


@dataclass(frozen=True)
class _Expr:
    op: str  # "" for a leaf
    value: Fraction
    left: _Expr | None = None
    right: _Expr | None = None


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "": 3}


def _expr_str(e: _Expr, paren_negative_leaves: bool) -> str:
    if not e.op:
        text = fmt_number(e.value)
        return f"({text})" if paren_negative_leaves and e.value < 0 else text
    assert e.left is not None and e.right is not None
    left = _expr_str(e.left, paren_negative_leaves)
    right = _expr_str(e.right, paren_negative_leaves)
    if _PRECEDENCE[e.left.op] < _PRECEDENCE[e.op]:
        left = f"({left})"
    if _PRECEDENCE[e.right.op] <= _PRECEDENCE[e.op]:
        right = f"({right})"
    return f"{left} {e.op} {right}" if e.op in "+-" else f"{left}{e.op}{right}"


def _rand_expr(rng: random.Random, leaves: int, ops: str, lo: int, hi: int) -> _Expr:
    if leaves == 1:
        return _Expr("", Fraction(rng.randint(lo, hi)))
    k = rng.randint(1, leaves - 1)
    left, right = _rand_expr(rng, k, ops, lo, hi), _rand_expr(rng, leaves - k, ops, lo, hi)
    op = rng.choice(ops)
    if op == "/" and right.value == 0:
        op = "*"
    value = {
        "+": lambda: left.value + right.value,
        "-": lambda: left.value - right.value,
        "*": lambda: left.value * right.value,
        "/": lambda: left.value / right.value,
    }[op]()
    return _Expr(op, value, left, right)


def _q_add_sub_multiple(rng: random.Random) -> tuple[str, str]:
    expr = _rand_expr(rng, rng.randint(3, 6), "+-", -20, 20)
    text = _expr_str(expr, paren_negative_leaves=False)
    template = rng.choice(["What is {e}?", "Calculate {e}.", "Evaluate {e}.", "{e}"])
    return template.format(e=text), fmt_number(expr.value)


def _q_mixed(rng: random.Random) -> tuple[str, str]:
    while True:
        expr = _rand_expr(rng, rng.randint(3, 5), "+-*/", -15, 15)
        if expr.value.denominator <= 100 and abs(expr.value) <= 10**5:
            break
    text = _expr_str(expr, paren_negative_leaves=True)
    template = rng.choice(
        ["What is {e}?", "Calculate {e}.", "Evaluate {e}.", "What is the value of {e}?"]
    )
    return template.format(e=text), fmt_number(expr.value)


def _q_mul(rng: random.Random) -> tuple[str, str]:
    a = _rand_value(rng, -100, 100)
    b = Decimal(rng.randint(-50, 50)) if rng.random() < 0.6 else _rand_decimal(rng, -10, 10, 2)
    template = rng.choice(
        [
            "Multiply {a} and {b}.",
            "What is {a} times {b}?",
            "Calculate {a}*{b}.",
            "Product of {a} and {b}.",
            "{a} * {b}",
            "Work out {a} * {b}.",
        ]
    )
    return template.format(a=fmt_number(a), b=fmt_number(b)), fmt_number(a * b)


def _q_div(rng: random.Random) -> tuple[str, str]:
    b = _nonzero(rng, -60, 60)
    quotient = rng.randint(-500, 500)
    a = b * quotient
    template = rng.choice(
        [
            "Divide {a} by {b}.",
            "What is {a} divided by {b}?",
            "Calculate {a} divided by {b}.",
            "{a} divided by {b}",
            "What is {a} divided by {b}?",
        ]
    )
    return template.format(a=a, b=b), str(quotient)


def _q_linear_1d(rng: random.Random) -> tuple[str, str]:
    var = rng.choice(_VARS)
    solution = rng.randint(-25, 25)
    k = _nonzero(rng, -40, 40)
    var_terms = [(c, var) for c in _split_int(rng, k, rng.choice([1, 2, 2, 3]))]
    const_terms = [(c, "") for c in _split_int(rng, -k * solution, rng.choice([1, 2, 2]))]
    terms = [t for t in var_terms + const_terms if t[0] != 0]
    return f"Solve {_equation(rng, terms)} for {var}.", str(solution)


def _q_linear_2d(rng: random.Random) -> tuple[str, str]:
    x, y = rng.sample(_VARS, 2)
    sx, sy = rng.randint(-10, 10), rng.randint(-10, 10)
    while True:
        a1, b1, a2, b2 = (_nonzero(rng, -12, 12) for _ in range(4))
        if a1 * b2 - a2 * b1 != 0:
            break
    eqs = []
    for a, b in ((a1, b1), (a2, b2)):
        const = -(a * sx + b * sy)
        terms = [(a, x), (b, y)] + ([(const, "")] if const else [])
        eqs.append(_equation(rng, terms))
    return f"Solve {eqs[0]}, {eqs[1]} for {x}.", str(sx)


def _q_evaluate(rng: random.Random) -> tuple[str, str]:
    fname, var = rng.sample(_VARS, 2)
    coeffs = _rand_poly(rng, rng.randint(1, 3), 10)
    point = rng.randint(-6, 6)
    verb = rng.choice(
        [
            "What is {f}({x})?",
            "Calculate {f}({x}).",
            "Determine {f}({x}).",
            "Give {f}({x}).",
            "What is the value of {f}({x})?",
        ]
    )
    question = f"Let {fname}({var}) = {poly_str(coeffs, var)}. " + verb.format(f=fname, x=point)
    return question, str(_poly_eval(coeffs, point))


def _q_expand(rng: random.Random) -> tuple[str, str]:
    var = rng.choice(_VARS)
    product = [1]
    factors = []
    for _ in range(rng.choice([2, 2, 3])):
        a, b = _nonzero(rng, -5, 5), _nonzero(rng, -9, 9)
        product = _poly_mul(product, [b, a])
        terms = [(a, var), (b, "")]
        if rng.random() < 0.3:
            terms.reverse()
        factors.append(f"({_terms_str(terms)})")
    question = "*".join(factors)
    if rng.random() < 0.3:
        c, power = _nonzero(rng, -9, 9), rng.randint(1, len(product) - 1)
        product[power] += c
        question += (" - " if c < 0 else " + ") + _terms_str([(abs(c), _mono(var, power))])
    return f"Expand {question}.", poly_str(product, var)


def _mono(var: str, power: int) -> str:
    return var if power == 1 else f"{var}**{power}"


def _q_differentiate(rng: random.Random) -> tuple[str, str]:
    var = rng.choice(_VARS)
    order = rng.choice([1, 1, 1, 2, 2, 3])
    coeffs = _rand_poly(rng, rng.randint(max(2, order), 5), 60, density=0.5)
    derivative = list(coeffs)
    for _ in range(order):
        derivative = _poly_diff(derivative)
    p = poly_str(coeffs, var)
    nth = {1: "first", 2: "second", 3: "third"}[order]
    templates = [
        f"Find the {nth} derivative of {p} wrt {var}.",
        f"What is the {nth} derivative of {p} wrt {var}?",
        f"Calculate the {nth} derivative of {p} wrt {var}.",
    ]
    if order == 1:
        templates += [
            f"Differentiate {p} with respect to {var}.",
            f"What is the derivative of {p} wrt {var}?",
            f"Differentiate {p} wrt {var}.",
        ]
    return rng.choice(templates), poly_str(derivative, var)


def _q_gcd(rng: random.Random) -> tuple[str, str]:
    g = rng.randint(2, 120)
    m, n = rng.randint(1, 90), rng.randint(1, 90)
    a, b = g * m, g * n
    template = rng.choice(
        [
            "Calculate the greatest common divisor of {a} and {b}.",
            "What is the greatest common divisor of {a} and {b}?",
            "What is the highest common factor of {a} and {b}?",
            "Calculate the highest common factor of {a} and {b}.",
            "What is the greatest common factor of {a} and {b}?",
        ]
    )
    return template.format(a=a, b=b), str(math.gcd(a, b))


def _q_lcm(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(2, 300), rng.randint(2, 300)
    if rng.random() < 0.3:
        p, q = rng.randint(1, 30), rng.randint(1, 30)
        if math.gcd(p, a) == 1 and math.gcd(q, b) == 1:
            p, q = p * rng.choice([-1, 1]), q * rng.choice([-1, 1])
            question = f"Calculate the common denominator of {p}/{a} and {q}/{b}."
            return question, str(math.lcm(a, b))
    template = rng.choice(
        [
            "What is the least common multiple of {a} and {b}?",
            "Calculate the lowest common multiple of {a} and {b}.",
            "What is the smallest common multiple of {a} and {b}?",
            "Calculate the least common multiple of {a} and {b}.",
        ]
    )
    return template.format(a=a, b=b), str(math.lcm(a, b))


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def _q_is_prime(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.5:
        n = rng.randint(100, 200_000)
        while not is_prime(n):
            n += 1
    else:
        n = rng.choice([3, 7, 11, 13, 17, 19, 23, 29, 31]) * rng.randint(5, 9000)
    if rng.random() < 0.7:
        template = rng.choice(["Is {n} a prime number?", "Is {n} prime?"])
        return template.format(n=n), str(is_prime(n))
    template = rng.choice(["Is {n} a composite number?", "Is {n} composite?"])
    return template.format(n=n), str(not is_prime(n))


_PLACE_NAMES = (
    "units",
    "tens",
    "hundreds",
    "thousands",
    "ten thousands",
    "hundred thousands",
    "millions",
    "ten millions",
)


def _q_place_value(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(10**3, 10**8 - 1)
    place = rng.randint(0, len(str(n)) - 1)
    digit = (n // 10**place) % 10
    return f"What is the {_PLACE_NAMES[place]} digit of {n}?", str(digit)


def _q_div_remainder(rng: random.Random) -> tuple[str, str]:
    b = rng.randint(2, 400)
    a = rng.randint(b + 1, 200_000)
    template = rng.choice(
        [
            "What is the remainder when {a} is divided by {b}?",
            "Calculate the remainder when {a} is divided by {b}.",
            "What is the remainder of {a} divided by {b}?",
        ]
    )
    return template.format(a=a, b=b), str(a % b)


def _q_round(rng: random.Random) -> tuple[str, str]:
    while True:
        x = Fraction(rng.randint(-(10**7), 10**7), 10 ** rng.randint(0, 6))
        if rng.random() < 0.5:
            dp = rng.randint(0, 3)
            unit = Fraction(1, 10**dp)
            what = (
                "the nearest integer",
                "one decimal place",
                "two decimal places",
                "three decimal places",
            )[dp]
        else:
            power = rng.randint(1, 5)
            unit = Fraction(10**power)
            what = (
                "the nearest "
                + ("ten", "one hundred", "one thousand", "ten thousand", "one hundred thousand")[
                    power - 1
                ]
            )
        scaled = x / unit
        if scaled.denominator in (1, 2):
            continue  # nothing to round, or an exact tie (conventions differ): draw again
        template = rng.choice(["Round {x} to {w}.", "What is {x} rounded to {w}?"])
        return template.format(x=_decimal_str(x), w=what), _decimal_str(round(scaled) * unit)


_SMALL_PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def _q_prime_factors(rng: random.Random) -> tuple[str, str]:
    n = 1
    for _ in range(rng.randint(2, 6)):
        n *= rng.choice(_SMALL_PRIMES)
    if rng.random() < 0.3:
        big = rng.randint(100, 3000)
        while not is_prime(big):
            big += 1
        n *= big
    factors = sorted(_factorize(n))
    template = rng.choice(["What are the prime factors of {n}?", "List the prime factors of {n}."])
    return template.format(n=n), ", ".join(str(p) for p in factors)


def _factorize(n: int) -> set[int]:
    out, d = set(), 2
    while d * d <= n:
        while n % d == 0:
            out.add(d)
            n //= d
        d += 1
    if n > 1:
        out.add(n)
    return out


def _rand_comparable(rng: random.Random) -> tuple[Fraction, str]:
    kind = rng.random()
    if kind < 0.4:
        value = rng.randint(-20, 20)
        return Fraction(value), str(value)
    if kind < 0.7:
        dec = _rand_decimal(rng, -5, 5, 2)
        return Fraction(dec), fmt_number(dec)
    frac = Fraction(rng.randint(-40, 40), rng.randint(2, 13))
    return frac, fmt_number(frac)


def _distinct_values(rng: random.Random, count: int) -> list[tuple[Fraction, str]]:
    values: list[tuple[Fraction, str]] = []
    while len(values) < count:
        candidate = _rand_comparable(rng)
        if all(candidate[0] != v for v, _ in values):
            values.append(candidate)
    return values


def _q_pair(rng: random.Random) -> tuple[str, str]:
    (x, xs), (y, ys) = _distinct_values(rng, 2)
    kind = rng.randint(0, 5)
    if kind == 0:
        return f"Which is bigger: {xs} or {ys}?", xs if x > y else ys
    if kind == 1:
        return f"Which is greater: {xs} or {ys}?", xs if x > y else ys
    if kind == 2:
        return f"Which is smaller: {xs} or {ys}?", xs if x < y else ys
    if kind == 3:
        return f"Is {xs} greater than {ys}?", str(x > y)
    if kind == 4:
        return f"Is {xs} less than {ys}?", str(x < y)
    return f"Is {xs} at least {ys}?", str(x >= y)


def _q_sort(rng: random.Random) -> tuple[str, str]:
    values = _distinct_values(rng, rng.randint(3, 6))
    listed = ", ".join(s for _, s in values)
    descending = rng.random() < 0.5
    ordered = ", ".join(s for _, s in sorted(values, key=lambda v: v[0], reverse=descending))
    if descending:
        template = rng.choice(["Sort {l} in decreasing order.", "Put {l} in descending order."])
    else:
        template = rng.choice(
            ["Sort {l} in increasing order.", "Put {l} in ascending order.", "Sort {l}."]
        )
    return template.format(l=listed), ordered


def _q_closest(rng: random.Random) -> tuple[str, str]:
    while True:
        values = _distinct_values(rng, rng.randint(3, 5))
        target, target_str = _rand_comparable(rng)
        distances = sorted(abs(v - target) for v, _ in values)
        if distances[0] != distances[1]:
            break
    best = min(values, key=lambda v: abs(v[0] - target))[1]
    listed = ", ".join(s for _, s in values)
    template = rng.choice(
        [
            "What is the nearest to {t} in {l}?",
            "What is the closest to {t} in {l}?",
        ]
    )
    return template.format(t=target_str, l=listed), best


def _q_kth_biggest(rng: random.Random) -> tuple[str, str]:
    values = _distinct_values(rng, rng.randint(3, 6))
    k = rng.randint(1, len(values))
    biggest = rng.random() < 0.5
    ordered = sorted(values, key=lambda v: v[0], reverse=biggest)
    ordinal = ["", "second ", "third ", "fourth ", "fifth ", "sixth "][k - 1]
    word = "biggest" if biggest else "smallest"
    listed = ", ".join(s for _, s in values)
    if k == 1:
        question = f"What is the {word} value in {listed}?"
    else:
        question = f"What is the {ordinal}{word} value in {listed}?"
    return question, ordered[k - 1][1]


_UNITS: dict[str, dict[str, Fraction]] = {
    "length": {
        "kilometers": Fraction(1000),
        "meters": Fraction(1),
        "centimeters": Fraction(1, 100),
        "millimeters": Fraction(1, 1000),
        "micrometers": Fraction(1, 10**6),
        "nanometers": Fraction(1, 10**9),
    },
    "mass": {
        "tonnes": Fraction(10**6),
        "kilograms": Fraction(1000),
        "grams": Fraction(1),
        "milligrams": Fraction(1, 1000),
        "micrograms": Fraction(1, 10**6),
        "nanograms": Fraction(1, 10**9),
    },
    "volume": {"litres": Fraction(1), "millilitres": Fraction(1, 1000)},
    "time": {
        "weeks": Fraction(604800),
        "days": Fraction(86400),
        "hours": Fraction(3600),
        "minutes": Fraction(60),
        "seconds": Fraction(1),
        "milliseconds": Fraction(1, 1000),
        "microseconds": Fraction(1, 10**6),
        "nanoseconds": Fraction(1, 10**9),
    },
}


def _q_conversion(rng: random.Random) -> tuple[str, str]:
    quantity = rng.choice(sorted(_UNITS))
    units = _UNITS[quantity]
    while True:
        src, dst = rng.sample(sorted(units), 2)
        value = Fraction(_rand_decimal(rng, 0, 100, 3)) or Fraction(1, 2)
        answer = value * units[src] / units[dst]
        try:
            answer_str = _decimal_str(answer)
        except ValueError:
            continue  # e.g. minutes to weeks: not a finite decimal
        if len(answer_str) <= 16:
            break
    template = rng.choice(
        ["How many {d} are there in {v} {s}?", "What is {v} {s} in {d}?", "Convert {v} {s} to {d}."]
    )
    return template.format(d=dst, v=_decimal_str(value), s=src), answer_str


DM_MODULES: dict[str, Callable[[random.Random], tuple[str, str]]] = {
    "algebra__linear_1d": _q_linear_1d,
    "algebra__linear_2d": _q_linear_2d,
    "arithmetic__add_or_sub": _q_add_or_sub,
    "arithmetic__add_sub_multiple": _q_add_sub_multiple,
    "arithmetic__div": _q_div,
    "arithmetic__mixed": _q_mixed,
    "arithmetic__mul": _q_mul,
    "calculus__differentiate": _q_differentiate,
    "comparison__closest": _q_closest,
    "comparison__kth_biggest": _q_kth_biggest,
    "comparison__pair": _q_pair,
    "comparison__sort": _q_sort,
    "measurement__conversion": _q_conversion,
    "numbers__div_remainder": _q_div_remainder,
    "numbers__gcd": _q_gcd,
    "numbers__is_prime": _q_is_prime,
    "numbers__lcm": _q_lcm,
    "numbers__list_prime_factors": _q_prime_factors,
    "numbers__place_value": _q_place_value,
    "numbers__round_number": _q_round,
    "polynomials__evaluate": _q_evaluate,
    "polynomials__expand": _q_expand,
}
"""Generators named after the DeepMind Mathematics modules whose style they follow."""


def generate_problems(module: str, seed: int | str, count: int) -> list[Problem]:
    """``count`` problems of one module from ``random.Random(seed)`` (process-independent)."""
    if module not in DM_MODULES:
        raise ValueError(f"unknown module {module!r}; choose from {sorted(DM_MODULES)}")
    rng = random.Random(f"minipile-dm:{module}:{seed}")
    make = DM_MODULES[module]
    return [Problem(module, *make(rng)) for _ in range(count)]
