"""Problem families for the tiny tool-integrated math model.

Each family is a function ``rng -> TinyProblem``. The reference ``answer`` is
computed by a plain-Python solver written independently of the solution cells
in ``steps`` (which are meant to be run in the sandbox and rendered into a
transcript). Steps with ``expect_error=True`` are deliberate failures (error
recovery): they must fail in the sandbox, and the next step fixes them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Step:
    thought: str  # one short reasoning line written before the code
    code: str  # the Python cell (prints its result on the last line)
    expect_error: bool = False  # a deliberate failing cell (error recovery)


@dataclass(frozen=True)
class TinyProblem:
    family: str
    problem: str
    answer: int
    steps: tuple[Step, ...]
    closing: str = "The answer is"


CLOSINGS = (
    "The answer is",
    "So the answer is",
    "Therefore the result is",
    "Hence the answer is",
    "The final answer is",
    "Thus the answer is",
    "So the result is",
)

MOD_SUFFIXES = (
    "Give your answer modulo 1000.",
    "Report the remainder when this number is divided by 1000.",
    "Find the answer modulo 1000.",
    "What is this value mod 1000?",
)

MOD_P = 0.2
ERROR_P = 0.15


def _recovering(rng: random.Random, clean: list[Step], failed: Step, fix: Step) -> list[Step]:
    """With probability ``ERROR_P``: a first attempt that fails in the sandbox, then its fix;
    otherwise the clean solution."""
    return [failed, fix] if rng.random() < ERROR_P else clean


# --------------------------------------------------------------------------
# reference helpers (plain Python, independent of the solution cells)

_SIEVE_LIMIT = 200_001
_sieve_cache: list[bool] = []


def _sieve() -> list[bool]:
    if not _sieve_cache:
        flags = [True] * _SIEVE_LIMIT
        flags[0] = flags[1] = False
        i = 2
        while i * i < _SIEVE_LIMIT:
            if flags[i]:
                for j in range(i * i, _SIEVE_LIMIT, i):
                    flags[j] = False
            i += 1
        _sieve_cache.extend(flags)
    return _sieve_cache


def _small_primes(limit: int) -> list[int]:
    flags = _sieve()
    return [p for p in range(2, limit + 1) if flags[p]]


def _factor(n: int) -> dict[int, int]:
    out: dict[int, int] = {}
    d = 2
    while d * d <= n:
        while n % d == 0:
            out[d] = out.get(d, 0) + 1
            n //= d
        d += 1 if d == 2 else 2
    if n > 1:
        out[n] = out.get(n, 0) + 1
    return out


def _euclid(a: int, b: int) -> int:
    a, b = abs(a), abs(b)
    while b:
        a, b = b, a % b
    return a


def _lcm(*nums: int) -> int:
    out = 1
    for n in nums:
        out = out * n // _euclid(out, n)
    return out


def _powmod(base: int, exp: int, mod: int) -> int:
    result, base = 1 % mod, base % mod
    while exp:
        if exp & 1:
            result = result * base % mod
        base = base * base % mod
        exp >>= 1
    return result


def _iroot(n: int, k: int) -> int:
    """Largest r with r**k <= n (binary search)."""
    lo, hi = 0, 1
    while hi**k <= n:
        hi *= 2
    while lo < hi - 1:
        mid = (lo + hi) // 2
        if mid**k <= n:
            lo = mid
        else:
            hi = mid
    return lo


def _digits(n: int, base: int) -> list[int]:
    out = []
    while n:
        n, r = divmod(n, base)
        out.append(r)
    return out[::-1] or [0]


def _random_composite(rng: random.Random, limit: int) -> int:
    """A number <= limit with several prime factors (more divisors than random)."""
    primes = _small_primes(60)
    while True:
        n = 1
        for _ in range(rng.randint(2, 7)):
            p = rng.choice(primes[: rng.randint(3, len(primes))])
            if n * p > limit:
                break
            n *= p
        if rng.random() < 0.4:
            q = rng.choice(_small_primes(2000))
            if n * q <= limit:
                n *= q
        if n > 50:
            return n


def _poly_mul(a: list[int], b: list[int]) -> list[int]:
    """Multiply coefficient lists (descending powers)."""
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _poly_text(coeffs: list[int], code: bool = False) -> str:
    deg = len(coeffs) - 1
    parts: list[str] = []
    for i, c in enumerate(coeffs):
        if c == 0:
            continue
        power = deg - i
        mag = abs(c)
        if power == 0:
            term = str(mag)
        else:
            var = "x" if power == 1 else (f"x**{power}" if code else f"x^{power}")
            term = var if mag == 1 else (f"{mag}*{var}" if code else f"{mag}{var}")
        if not parts:
            parts.append(term if c > 0 else f"-{term}")
        else:
            parts.append(f"{'+' if c > 0 else '-'} {term}")
    return " ".join(parts) if parts else "0"


def _mod_wrap(rng: random.Random, problem: str) -> tuple[str, bool]:
    if rng.random() < MOD_P:
        return f"{problem} {rng.choice(MOD_SUFFIXES)}", True
    return problem, False


def _pr(expr: str, mod: bool) -> str:
    return f"print(({expr}) % 1000)" if mod else f"print({expr})"


def _make(family: str, rng: random.Random, problem: str, answer: int, steps: Sequence[Step]) -> TinyProblem:
    return TinyProblem(family, problem, int(answer), tuple(steps), rng.choice(CLOSINGS))


# --------------------------------------------------------------------------
# families


def prime_count_range(rng: random.Random) -> TinyProblem:
    a = rng.randint(2, 60000)
    b = a + rng.randint(200, 40000)
    flags = _sieve()
    answer = sum(1 for n in range(a, b + 1) if flags[n])
    problem = rng.choice([
        f"How many prime numbers p satisfy {a} <= p <= {b}?",
        f"Count the primes between {a} and {b}, inclusive.",
        f"Find the number of primes in the interval [{a}, {b}].",
        f"Let S be the set of primes that are at least {a} and at most {b}. Find |S|.",
    ])
    sympy_brute = f"from sympy import isprime\ncount = sum(1 for n in range({a}, {b + 1}) if isprime(n))\nprint(count)"
    step = rng.choice([
        Step("Use sympy's prime counting function.", f"from sympy import primepi\ncount = primepi({b}) - primepi({a - 1})\nprint(count)"),
        Step("List the primes in the range with sympy and count them.", f"from sympy import primerange\nprimes = list(primerange({a}, {b + 1}))\nprint(len(primes))"),
        Step("Test each number in the range for primality.", sympy_brute),
    ])
    steps = _recovering(
        rng, [step],
        Step("Test each number with isprime from math.", f"from math import isprime\ncount = sum(1 for n in range({a}, {b + 1}) if isprime(n))\nprint(count)", True),
        Step("math has no isprime; use sympy's isprime instead.", sympy_brute),
    )
    return _make("prime_count_range", rng, problem, answer, steps)


def prime_sum_range(rng: random.Random) -> TinyProblem:
    a = rng.randint(2, 50000)
    b = a + rng.randint(50, 30000)
    flags = _sieve()
    total = sum(n for n in range(a, b + 1) if flags[n])
    problem = rng.choice([
        f"Find the sum of all primes p with {a} <= p <= {b}.",
        f"What is the sum of the prime numbers between {a} and {b}, inclusive?",
        f"Add up every prime number in the interval [{a}, {b}]. What do you get?",
        f"Let T be the sum of all primes not less than {a} and not greater than {b}. Compute T.",
    ])
    problem, mod = _mod_wrap(rng, problem)
    answer = total % 1000 if mod else total
    if rng.random() < 0.6:
        steps = [
            Step("First list the primes in the range.", f"from sympy import primerange\nprimes = list(primerange({a}, {b + 1}))\nprint(len(primes), primes[:5])"),
            Step("The primes are in the list; now add them.", _pr("sum(primes)", mod)),
        ]
    else:
        steps = [Step("Sum the primes in the range directly with sympy.", f"from sympy import primerange\ntotal = sum(primerange({a}, {b + 1}))\n" + _pr("total", mod))]
    return _make("prime_sum_range", rng, problem, answer, steps)


def divisor_count(rng: random.Random) -> TinyProblem:
    if rng.random() < 0.3:
        x, y = _random_composite(rng, 10**5), _random_composite(rng, 10**5)
        n, shown = x * y, f"{x} * {y}"
    else:
        n = _random_composite(rng, 10**10)
        shown = str(n)
    answer = 1
    for e in _factor(n).values():
        answer *= e + 1
    problem = rng.choice([
        f"How many positive divisors does {shown} have?",
        f"Find the number of positive integers that divide {shown}.",
        f"Let N = {shown}. Compute the number of positive divisors of N.",
        f"Determine d(N), the number of divisors of N = {shown}.",
    ])
    if rng.random() < 0.5:
        steps = [
            Step("Factor the number first.", f"from sympy import factorint\nfactors = factorint({n})\nprint(factors)"),
            Step("Multiply (exponent + 1) over the factorization above.", "count = 1\nfor e in factors.values():\n    count *= e + 1\nprint(count)"),
        ]
    else:
        steps = [Step("Use sympy's divisor_count.", f"from sympy import divisor_count\nprint(divisor_count({n}))")]
    return _make("divisor_count", rng, problem, answer, steps)


def divisor_sum(rng: random.Random) -> TinyProblem:
    n = _random_composite(rng, 10**8)
    sigma = 1
    for p, e in _factor(n).items():
        sigma *= (p ** (e + 1) - 1) // (p - 1)
    proper = rng.random() < 0.3
    value = sigma - n if proper else sigma
    if proper:
        problem = rng.choice([
            f"Find the sum of the proper divisors of {n} (all positive divisors except {n} itself).",
            f"What is the sum of all positive divisors of {n} that are less than {n}?",
            f"Let N = {n}. Add up every divisor d of N with 1 <= d < N.",
        ])
    else:
        problem = rng.choice([
            f"Find the sum of all positive divisors of {n}.",
            f"Compute sigma(N), the sum of the divisors of N = {n}.",
            f"What is the sum of every positive integer that divides {n}?",
        ])
    problem, mod = _mod_wrap(rng, problem)
    answer = value % 1000 if mod else value
    expr = "total - " + str(n) if proper else "total"
    step = rng.choice([
        Step("Use sympy's divisor_sigma.", f"from sympy import divisor_sigma\ntotal = divisor_sigma({n})\n" + _pr(expr, mod)),
        Step("List the divisors with sympy and add them.", f"from sympy import divisors\ntotal = sum(divisors({n}))\n" + _pr(expr, mod)),
    ])
    return _make("divisor_sum", rng, problem, answer, [step])


def gcd_lcm(rng: random.Random) -> TinyProblem:
    g = rng.randint(2, 300)
    kind = rng.randrange(3)
    mod = False
    if kind == 0:
        x, y = rng.randint(2, 500), rng.randint(2, 500)
        a, b = g * x, g * y
        value = _euclid(a, b) + a * b // _euclid(a, b)
        problem = rng.choice([
            f"Find gcd({a}, {b}) + lcm({a}, {b}).",
            f"Let g be the greatest common divisor and l the least common multiple of {a} and {b}. Compute g + l.",
            f"What is the sum of the GCD and the LCM of {a} and {b}?",
        ])
        problem, mod = _mod_wrap(rng, problem)
        code = f"import math\na, b = {a}, {b}\n" + _pr("math.gcd(a, b) + math.lcm(a, b)", mod)
        alt = f"from sympy import gcd, lcm\na, b = {a}, {b}\n" + _pr("gcd(a, b) + lcm(a, b)", mod)
    elif kind == 1:
        x, y = rng.randint(2, 400), rng.randint(2, 400)
        a, b = g * x, g * y
        value = (a * b // _euclid(a, b)) // _euclid(a, b)
        problem = rng.choice([
            f"Compute lcm({a}, {b}) / gcd({a}, {b}).",
            f"Divide the least common multiple of {a} and {b} by their greatest common divisor. What is the result?",
            f"For a = {a} and b = {b}, find the ratio of lcm(a, b) to gcd(a, b).",
        ])
        code = f"import math\na, b = {a}, {b}\nprint(math.lcm(a, b) // math.gcd(a, b))"
        alt = f"from sympy import gcd, lcm\na, b = {a}, {b}\nprint(lcm(a, b) // gcd(a, b))"
    else:
        nums = [rng.randint(2, 60) * rng.choice([1, 2, 3, 5, 7]) for _ in range(3)]
        value = _lcm(*nums)
        problem = rng.choice([
            f"Find the least common multiple of {nums[0]}, {nums[1]} and {nums[2]}.",
            f"What is the smallest positive integer divisible by each of {nums[0]}, {nums[1]}, {nums[2]}?",
            f"Compute lcm({nums[0]}, {nums[1]}, {nums[2]}).",
        ])
        problem, mod = _mod_wrap(rng, problem)
        code = f"import math\n" + _pr(f"math.lcm({nums[0]}, {nums[1]}, {nums[2]})", mod)
        alt = f"from sympy import lcm\nresult = lcm(lcm({nums[0]}, {nums[1]}), {nums[2]})\n" + _pr("result", mod)
    answer = value % 1000 if mod else value
    step = rng.choice([Step("Use math.gcd and math.lcm.", code), Step("Use sympy's gcd and lcm.", alt)])
    return _make("gcd_lcm", rng, problem, answer, [step])


def mod_power(rng: random.Random) -> TinyProblem:
    a = rng.randint(2, 10**4)
    b = rng.randint(10**3, 10**15)
    m = rng.randint(7, 10**6)
    if rng.random() < 0.3:
        c, d = rng.randint(2, 999), rng.randint(10, 10**9)
        answer = (_powmod(a, b, m) + _powmod(c, d, m)) % m
        problem = rng.choice([
            f"Find the remainder when {a}^{b} + {c}^{d} is divided by {m}.",
            f"Compute ({a}^{b} + {c}^{d}) mod {m}.",
            f"What is {a}^{b} + {c}^{d} modulo {m}?",
        ])
        code = f"print((pow({a}, {b}, {m}) + pow({c}, {d}, {m})) % {m})"
    else:
        answer = _powmod(a, b, m)
        problem = rng.choice([
            f"Find the remainder when {a}^{b} is divided by {m}.",
            f"Compute {a}^{b} mod {m}.",
            f"Find the integer r with 0 <= r < {m} such that {a}^{b} is congruent to r modulo {m}.",
            f"What is {a} raised to the power {b}, modulo {m}?",
        ])
        code = rng.choice([f"print(pow({a}, {b}, {m}))", f"base, exponent, modulus = {a}, {b}, {m}\nprint(pow(base, exponent, modulus))"])
    thought = rng.choice(["Use three-argument pow for fast modular exponentiation.", "Modular exponentiation with pow(base, exp, mod)."])
    return _make("mod_power", rng, problem, answer, [Step(thought, code)])


def _ext_inverse(a: int, m: int) -> int:
    old_r, r, old_s, s = a % m, m, 1, 0
    while r:
        q = old_r // r
        old_r, r = r, old_r - q * r
        old_s, s = s, old_s - q * s
    return old_s % m


def mod_inverse(rng: random.Random) -> TinyProblem:
    while True:
        m = rng.choice([rng.choice(_small_primes(200000)[1000:]), rng.randint(100, 10**6)])
        a = rng.randint(2, m - 1)
        if _euclid(a, m) == 1:
            break
    inv = _ext_inverse(a, m)
    if rng.random() < 0.35:
        c = rng.randint(2, m - 1)
        answer = c * inv % m
        problem = rng.choice([
            f"Find the unique x with 0 <= x < {m} such that {a}x is congruent to {c} modulo {m}.",
            f"Solve {a}x = {c} (mod {m}) for 0 <= x < {m}.",
            f"What is the smallest nonnegative integer x such that {a}x - {c} is divisible by {m}?",
        ])
        final = f"print({c} * inverse % {m})"
    else:
        answer = inv
        problem = rng.choice([
            f"Find the multiplicative inverse of {a} modulo {m}, as an integer between 0 and {m - 1}.",
            f"Find the integer x with 0 <= x < {m} such that {a}x is congruent to 1 modulo {m}.",
            f"What is the smallest positive integer x such that {a}x - 1 is divisible by {m}?",
        ])
        final = "print(inverse)"
    good = rng.choice([
        Step("Inverse via pow with exponent -1.", f"inverse = pow({a}, -1, {m})\n{final}"),
        Step("Use sympy's mod_inverse.", f"from sympy import mod_inverse\ninverse = mod_inverse({a}, {m})\n{final}"),
    ])
    steps = _recovering(
        rng, [good],
        Step("Compute the modular inverse.", f"inverse = mod_inverse({a}, {m})\n{final}", True),
        Step("mod_inverse was not imported; import it from sympy.", f"from sympy import mod_inverse\ninverse = mod_inverse({a}, {m})\n{final}"),
    )
    return _make("mod_inverse", rng, problem, answer, steps)


def digit_sum_power(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randint(2, 99), rng.randint(10, 400)
        value = a**b
        answer = 0
        while value:
            value, r = divmod(value, 10)
            answer += r
        problem = rng.choice([
            f"What is the sum of the digits of {a}^{b}?",
            f"Find the digit sum of {a} raised to the power {b}.",
            f"Let N = {a}^{b}. Compute the sum of the decimal digits of N.",
        ])
        step = rng.choice([
            Step("Compute the power exactly and add its digits.", f"value = {a}**{b}\nprint(sum(int(d) for d in str(value)))"),
            Step("Add the digits of the exact power.", f"print(sum(map(int, str({a}**{b}))))"),
        ])
    elif kind == 1:
        n = rng.randint(20, 400)
        value = 1
        for i in range(2, n + 1):
            value *= i
        answer = 0
        while value:
            value, r = divmod(value, 10)
            answer += r
        problem = rng.choice([
            f"Find the sum of the digits of {n}!.",
            f"What is the digit sum of {n} factorial?",
            f"Let N = {n}!. Compute the sum of the decimal digits of N.",
        ])
        step = Step("Compute the factorial and add its digits.", f"import math\nvalue = math.factorial({n})\nprint(sum(int(d) for d in str(value)))")
    else:
        a, b = rng.randint(2, 999), rng.randint(20, 3000)
        value, answer = a**b, 0
        while value:
            value //= 10
            answer += 1
        problem = rng.choice([
            f"How many digits does {a}^{b} have?",
            f"Find the number of decimal digits of {a} raised to the power {b}.",
            f"When {a}^{b} is written out in base 10, how many digits does it have?",
        ])
        step = Step("Count the digits of the exact power.", f"print(len(str({a}**{b})))")
    return _make("digit_sum_power", rng, problem, answer, [step])


def base_conversion(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(4)
    loop = "digits = []\nwhile n > 0:\n    digits.append(n % base)\n    n //= base\ndigits = digits[::-1]\nprint(digits)"
    if kind == 3:
        base = rng.randint(2, 9)
        digits = [rng.randint(1, base - 1)] + [rng.randint(0, base - 1) for _ in range(rng.randint(3, 9))]
        shown = "".join(map(str, digits))
        answer = 0
        for d in digits:
            answer = answer * base + d
        problem = rng.choice([
            f"Convert {shown}_{base} (base {base}) to base 10.",
            f"The number {shown} is written in base {base}. What is its value in decimal?",
            f"What decimal integer is represented by {shown} in base {base}?",
        ])
        step = rng.choice([
            Step("Parse the string with int and the base.", f"print(int('{shown}', {base}))"),
            Step("Evaluate the digits with Horner's rule.", f"value = 0\nfor d in '{shown}':\n    value = value * {base} + int(d)\nprint(value)"),
        ])
        return _make("base_conversion", rng, problem, answer, [step])
    base = rng.randint(2, 9) if kind == 2 else rng.randint(2, 16)
    n = rng.randint(10**3, 10**6 if kind != 2 else 2 * 10**5)
    ds = _digits(n, base)
    if kind == 0:
        answer = sum(ds)
        problem = rng.choice([
            f"Write {n} in base {base}. What is the sum of its digits?",
            f"Find the sum of the base-{base} digits of {n}.",
            f"When {n} is expressed in base {base}, what do its digits add up to (in decimal)?",
        ])
        final = "print(sum(digits))"
    elif kind == 1:
        answer = len(ds)
        problem = rng.choice([
            f"How many digits does {n} have when written in base {base}?",
            f"Find the number of digits in the base-{base} representation of {n}.",
            f"Express {n} in base {base}. How many digits are there?",
        ])
        final = "print(len(digits))"
    else:
        answer = 0
        for d in ds:
            answer = answer * 10 + d
        problem = rng.choice([
            f"Write {n} in base {base}, then read the digit string as a decimal number. What number do you get?",
            f"The base-{base} representation of {n} is read as if it were base 10. What is that number?",
            f"Convert {n} to base {base} and give the result as a string of digits (answer as an integer).",
        ])
        final = "print(int(''.join(str(d) for d in digits)))"
    steps = [
        Step(f"Get the base-{base} digits by repeated division.", f"n, base = {n}, {base}\n{loop}"),
        Step("Use the digit list from the previous output.", final),
    ]
    if rng.random() < 0.3:
        steps = [Step(f"Find the base-{base} digits and finish in one cell.", f"n, base = {n}, {base}\n{loop}\n{final}")]
    return _make("base_conversion", rng, problem, answer, steps)


def base_divisor(rng: random.Random) -> TinyProblem:
    while True:
        c = rng.randint(0, 9)
        three = rng.random() < 0.5
        big = [rng.randint(1, 9)] + [rng.randint(0, 9) for _ in range(2 if three else 1)]
        k = max(9, max(big), c) if rng.random() < 0.7 else max(max(big), c) + 1
        # b + c divides big(b) iff b + c divides big(-c)
        rem = 0
        for d in big:
            rem = rem * (-c) + d
        if rem == 0:
            continue
        divs = [d for d in range(1, abs(rem) + 1) if abs(rem) % d == 0]
        bases = [d - c for d in divs if d - c > k]
        if bases:
            break
    small_s = f"1{c}"
    big_s = "".join(map(str, big))
    want_sum = rng.random() < 0.7
    answer = sum(bases) if want_sum else len(bases)
    what = "the sum of all" if want_sum else "the number of"
    problem = rng.choice([
        f"Find {what} integer bases b > {k} for which {small_s}_b is a divisor of {big_s}_b.",
        f"For how many integer bases b > {k} does {small_s}_b divide {big_s}_b?"
        if not want_sum else f"Consider integer bases b > {k} such that {small_s}_b divides {big_s}_b. Find the sum of all such b.",
        f"Here {small_s}_b and {big_s}_b denote numbers written in base b. Find {what} bases b > {k} with {small_s}_b | {big_s}_b.",
    ])
    big_expr = " + ".join(
        (f"{d}*b**{len(big) - 1 - i}" if len(big) - 1 - i > 1 else (f"{d}*b" if len(big) - 1 - i == 1 else str(d)))
        for i, d in enumerate(big)
    )
    small_expr = f"b + {c}" if c else "b"
    limit = abs(rem) + 20
    final = "print(sum(bases))" if want_sum else "print(len(bases))"
    steps = [
        Step("Check every base up to a safe bound.", f"bases = [b for b in range({k + 1}, {limit}) if ({big_expr}) % ({small_expr}) == 0]\nprint(bases)"),
        Step("The valid bases are listed above; finish with them.", final),
    ]
    return _make("base_divisor", rng, problem, answer, steps)


def _fib_pair(n: int, m: int) -> tuple[int, int]:
    """(F_n mod m, F_{n+1} mod m) by fast doubling."""
    if n == 0:
        return 0, 1 % m
    a, b = _fib_pair(n // 2, m)
    c = a * ((2 * b - a) % m) % m
    d = (a * a + b * b) % m
    return (d, (c + d) % m) if n % 2 else (c, d)


def fibonacci_mod(rng: random.Random) -> TinyProblem:
    n = rng.randint(100, 40000)
    m = rng.choice([1000, 10**4, 10**9 + 7, rng.randint(10, 10**6)])
    intro = rng.choice([
        "The Fibonacci numbers satisfy F_1 = F_2 = 1 and F_n = F_(n-1) + F_(n-2).",
        "Let F_1 = 1, F_2 = 1, and F_(n+2) = F_(n+1) + F_n for n >= 1.",
        "Define the Fibonacci sequence by F_1 = F_2 = 1, F_k = F_(k-1) + F_(k-2).",
    ])
    if rng.random() < 0.3:
        answer = (_fib_pair(n + 2, m)[0] - 1) % m
        problem = f"{intro} Find (F_1 + F_2 + ... + F_{n}) mod {m}."
        step = Step("Add the terms in a loop, reducing mod m.", f"a, b, total = 0, 1, 0\nfor _ in range({n}):\n    a, b = b, (a + b) % {m}\n    total = (total + a) % {m}\nprint(total)")
    else:
        answer = _fib_pair(n, m)[0]
        problem = rng.choice([f"{intro} Find F_{n} mod {m}.", f"{intro} What is the remainder when F_{n} is divided by {m}?"])
        step = rng.choice([
            Step("Iterate the recurrence modulo m.", f"a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, (a + b) % {m}\nprint(a)"),
            Step("Use sympy's exact fibonacci and reduce.", f"from sympy import fibonacci\nprint(fibonacci({n}) % {m})"),
        ])
    return _make("fibonacci_mod", rng, problem, answer, [step])


def recurrence_mod(rng: random.Random) -> TinyProblem:
    a1, a2 = rng.randint(0, 20), rng.randint(1, 30)
    p, q = rng.randint(1, 9), rng.choice([x for x in range(-6, 10) if x != 0])
    n = rng.randint(50, 20000)
    m = rng.choice([1000, 997, 10**4 + 7, rng.randint(50, 10**5)])
    # reference: 2x2 matrix power; (a_{k+1}, a_k) = M^(k-1) (a_2, a_1)
    def mat_mul(x: list[list[int]], y: list[list[int]]) -> list[list[int]]:
        return [[(x[i][0] * y[0][j] + x[i][1] * y[1][j]) % m for j in range(2)] for i in range(2)]
    result, base, e = [[1, 0], [0, 1]], [[p, q], [1, 0]], n - 2
    while e > 0:
        if e & 1:
            result = mat_mul(result, base)
        base = mat_mul(base, base)
        e >>= 1
    answer = (result[0][0] * a2 + result[0][1] * a1) % m
    qs = f"+ {q}" if q > 0 else f"- {-q}"
    problem = rng.choice([
        f"A sequence has a_1 = {a1}, a_2 = {a2} and a_n = {p}a_(n-1) {qs}a_(n-2) for n >= 3. Find a_{n} mod {m}.",
        f"Let a_1 = {a1}, a_2 = {a2}, and for n > 2 let a_n = {p}a_(n-1) {qs}a_(n-2). What is the remainder when a_{n} is divided by {m}?",
        f"Compute a_{n} modulo {m}, where a_n = {p}a_(n-1) {qs}a_(n-2) with initial terms a_1 = {a1} and a_2 = {a2}.",
    ])
    if rng.random() < 0.6:
        steps = [
            Step("Build the sequence modulo m in a list.", f"seq = [{a1}, {a2}]\nwhile len(seq) < {n}:\n    seq.append(({p} * seq[-1] + {q} * seq[-2]) % {m})\nprint(len(seq), seq[:6])"),
            Step(f"The list has {n} terms; a_{n} is the last one.", f"print(seq[{n - 1}] % {m})"),
        ]
    else:
        steps = [Step("Iterate the recurrence with two variables, reducing mod m.", f"prev, cur = {a1}, {a2}\nfor _ in range({n - 2}):\n    prev, cur = cur, ({p} * cur + {q} * prev) % {m}\nprint(cur % {m})")]
    return _make("recurrence_mod", rng, problem, answer, steps)


def binomial_mod(rng: random.Random) -> TinyProblem:
    n = rng.randint(30, 3000)
    k = rng.randint(2, n - 2)
    m = rng.choice([1000, 10**9 + 7, 997, rng.randint(100, 10**6)])
    exact = 1
    for i in range(min(k, n - k)):
        exact = exact * (n - i) // (i + 1)
    answer = exact % m
    problem = rng.choice([
        f"Find C({n}, {k}) mod {m}, where C(n, k) is the binomial coefficient.",
        f"In how many ways can a committee of {k} be chosen from {n} people? Give the answer modulo {m}.",
        f"What is the remainder when the coefficient of x^{k} in (1 + x)^{n} is divided by {m}?",
        f"Compute the binomial coefficient {n} choose {k}, modulo {m}.",
    ])
    good = rng.choice([
        Step("Use math.comb and reduce.", f"import math\nprint(math.comb({n}, {k}) % {m})"),
        Step("Use sympy's binomial and reduce.", f"from sympy import binomial\nprint(binomial({n}, {k}) % {m})"),
    ])
    steps = _recovering(
        rng, [good],
        Step("Compute the binomial coefficient with math.comb.", f"print(math.comb({n}, {k}) % {m})", True),
        Step("math was not imported; import it and retry.", f"import math\nprint(math.comb({n}, {k}) % {m})"),
    )
    return _make("binomial_mod", rng, problem, answer, steps)


def lattice_points_circle(rng: random.Random) -> TinyProblem:
    big = rng.random() < 0.5
    n = rng.randint(50, 200**2) if not big else rng.randint(200**2, 1500**2)
    strict = rng.random() < 0.3
    if rng.random() < 0.4:
        r = _iroot(n, 2) if _iroot(n, 2) > 6 else 7
        n = r * r
        region = f"{'strictly inside' if strict else 'inside or on'} the circle of radius {r} centred at the origin"
    else:
        region = f"with x^2 + y^2 {'<' if strict else '<='} {n}"
    limit = n - 1 if strict else n
    answer = 2 * _iroot(limit, 2) + 1  # x = 0 column
    for x in range(1, _iroot(limit, 2) + 1):
        answer += 2 * (2 * _iroot(limit - x * x, 2) + 1)
    problem = rng.choice([
        f"How many points (x, y) with integer coordinates lie {region}?",
        f"Count the lattice points {region}.",
        f"Find the number of pairs of integers (x, y) {region.replace('the circle', 'the disk bounded by the circle') if 'circle' in region else region}.",
    ])
    problem, mod = _mod_wrap(rng, problem)
    answer = answer % 1000 if mod else answer
    op = "<" if strict else "<="
    r0 = _iroot(n, 2) + 1
    if not big and rng.random() < 0.5:
        code = f"count = sum(1 for x in range(-{r0}, {r0 + 1}) for y in range(-{r0}, {r0 + 1}) if x*x + y*y {op} {n})\n" + _pr("count", mod)
        step = Step("Brute force over a square containing the disk.", code)
    else:
        code = f"import math\nlimit = {limit}\nr = math.isqrt(limit)\ncount = sum(2 * math.isqrt(limit - x*x) + 1 for x in range(-r, r + 1))\n" + _pr("count", mod)
        step = Step("For each x, count the y values with isqrt.", code)
    return _make("lattice_points_circle", rng, problem, answer, [step])


def count_with_property(rng: random.Random) -> TinyProblem:
    n = rng.randint(1000, 200000)
    a, b = rng.sample(range(2, 30), 2)
    kind = rng.randrange(3)
    if kind == 0:
        c = rng.choice([x for x in range(2, 40) if x not in (a, b)])
        la, lb, lab = n // a, n // b, n // _lcm(a, b)
        answer = la + lb - lab - (n // _lcm(a, c) + n // _lcm(b, c) - n // _lcm(a, b, c))
        problem = rng.choice([
            f"How many integers from 1 to {n} are divisible by {a} or {b} but not by {c}?",
            f"Count the positive integers n <= {n} such that n is a multiple of {a} or of {b}, and n is not a multiple of {c}.",
            f"Among 1, 2, ..., {n}, how many numbers are divisible by at least one of {a} and {b}, yet not divisible by {c}?",
        ])
        cond = f"(k % {a} == 0 or k % {b} == 0) and k % {c} != 0"
    elif kind == 1:
        answer = n - n // a - n // b + n // _lcm(a, b)
        problem = rng.choice([
            f"How many integers from 1 to {n} are divisible by neither {a} nor {b}?",
            f"Count the positive integers up to {n} that are not multiples of {a} and not multiples of {b}.",
            f"Among the first {n} positive integers, how many are divisible by neither {a} nor {b}?",
        ])
        cond = f"k % {a} != 0 and k % {b} != 0"
    else:
        answer = n // a + n // b - 2 * (n // _lcm(a, b))
        problem = rng.choice([
            f"How many integers from 1 to {n} are divisible by exactly one of {a} and {b}?",
            f"Count the positive integers n <= {n} divisible by {a} or by {b}, but not by both.",
            f"Among 1, 2, ..., {n}, how many numbers are multiples of exactly one of the numbers {a}, {b}?",
        ])
        cond = f"(k % {a} == 0) != (k % {b} == 0)"
    thought = rng.choice(["Check every integer in the range directly.", "Brute force: test the condition for each k."])
    return _make("count_with_property", rng, problem, answer, [Step(thought, f"count = sum(1 for k in range(1, {n + 1}) if {cond})\nprint(count)")])


def arithmetic_series_sum(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(3)
    if kind == 0:
        a, d, n = rng.randint(-50, 500), rng.randint(1, 200), rng.randint(10, 5000)
        value = n * (2 * a + (n - 1) * d) // 2
        t = [a + d * i for i in range(3)]
        problem = rng.choice([
            f"Find the sum of the first {n} terms of the arithmetic sequence {t[0]}, {t[1]}, {t[2]}, ....",
            f"An arithmetic progression has first term {a} and common difference {d}. What is the sum of its first {n} terms?",
            f"Compute {t[0]} + {t[1]} + {t[2]} + ... where the sum has {n} terms in arithmetic progression.",
        ])
        problem, mod = _mod_wrap(rng, problem)
        code = rng.choice([f"total = sum({a} + {d} * i for i in range({n}))\n", f"terms = [{a} + {d} * i for i in range({n})]\nprint(terms[:3])\ntotal = sum(terms)\n"])
    else:
        k = rng.randint(2, 97)
        lo = rng.randint(1, 10**4)
        hi = lo + rng.randint(10**3, 10**6)
        r = rng.randint(0, k - 1) if kind == 2 else 0
        first = lo + ((r - lo) % k)
        if first > hi:
            value = 0
        else:
            count = (hi - first) // k + 1
            value = count * (first + first + (count - 1) * k) // 2
        if kind == 1:
            problem = rng.choice([
                f"Find the sum of all multiples of {k} between {lo} and {hi}, inclusive.",
                f"What is the sum of every integer n with {lo} <= n <= {hi} that is divisible by {k}?",
                f"Add all numbers in [{lo}, {hi}] that are multiples of {k}.",
            ])
        else:
            problem = rng.choice([
                f"Find the sum of all integers n with {lo} <= n <= {hi} and n leaving remainder {r} when divided by {k}.",
                f"What is the sum of every integer in [{lo}, {hi}] that is congruent to {r} modulo {k}?",
                f"Add up all n between {lo} and {hi} (inclusive) with n mod {k} = {r}.",
            ])
        problem, mod = _mod_wrap(rng, problem)
        code = rng.choice([
            f"total = sum(n for n in range({lo}, {hi + 1}) if n % {k} == {r})\n",
            f"total = 0\nfor n in range({lo}, {hi + 1}):\n    if n % {k} == {r}:\n        total += n\n",
        ])
    code += _pr("total", mod)
    if mod:
        value %= 1000
    return _make("arithmetic_series_sum", rng, problem, value, [Step(rng.choice(["Add the terms directly.", "Sum the terms with a generator."]), code)])


def geometric_series_sum(rng: random.Random) -> TinyProblem:
    a, r = rng.randint(1, 20), rng.randint(2, 12)
    mod = rng.random() < 0.5
    n = rng.randint(20, 200) if mod else rng.randint(5, 16)
    power = 1
    for _ in range(n):
        power *= r
    value = a * (power - 1) // (r - 1)
    t = [a * r**i for i in range(3)]
    if a == 1 and rng.random() < 0.5:
        base = rng.choice([
            f"Compute 1 + {r} + {r}^2 + ... + {r}^{n - 1}.",
            f"Find the sum of {r}^k for k = 0, 1, ..., {n - 1}.",
            f"What is the value of the sum of the powers {r}^0 through {r}^{n - 1}?",
        ])
    else:
        base = rng.choice([
            f"Find the sum of the first {n} terms of the geometric sequence {t[0]}, {t[1]}, {t[2]}, ....",
            f"A geometric progression has first term {a} and ratio {r}. What is the sum of its first {n} terms?",
            f"Compute {t[0]} + {t[1]} + {t[2]} + ... + {a}*{r}^{n - 1}.",
        ])
    if mod:
        problem = f"{base} {rng.choice(MOD_SUFFIXES)}"
        value %= 1000
    else:
        problem = base
    code = rng.choice([
        f"total = sum({a} * {r}**k for k in range({n}))\n" + _pr("total", mod),
        f"terms = [{a} * {r}**k for k in range({n})]\nprint(terms[:3])\n" + _pr("sum(terms)", mod),
    ])
    return _make("geometric_series_sum", rng, problem, value, [Step("Add the terms exactly with Python integers.", code)])


def _power_sums(e: list[int], k: int) -> int:
    """Newton's identities: power sum p_k of roots given elementary symmetric e1..e_d."""
    d = len(e)
    p: list[int] = [d]
    for j in range(1, k + 1):
        s = 0
        for i in range(1, min(j, d) + 1):
            term = e[i - 1] * (p[j - i] if j != i else 1) * (j if j == i else 1)
            s += (-1) ** (i - 1) * term
        p.append(s)
    return p[k]


def vieta_sum(rng: random.Random) -> TinyProblem:
    cubic = rng.random() < 0.4
    while True:
        if cubic:
            e = [rng.randint(-12, 12), rng.randint(-30, 30), rng.randint(-60, 60)]
            coeffs = [1, -e[0], e[1], -e[2]]
        else:
            e = [rng.randint(-30, 30), rng.randint(-200, 200)]
            coeffs = [1, -e[0], e[1]]
        what = rng.choice(["squares", "cubes"] + ([] if cubic else ["diff"]))
        if what == "squares":
            value = _power_sums(e, 2)
        elif what == "cubes":
            value = _power_sums(e, 3)
        else:
            value = e[0] ** 2 - 4 * e[1]
        if value > 0 and (cubic or e[0] ** 2 != 4 * e[1]):  # sympy lists a double root once
            break
    poly = _poly_text(coeffs)
    pcode = _poly_text(coeffs, code=True)
    roots_name = "r, s, t" if cubic else "r and s"
    if what == "squares":
        target, expr = ("r^2 + s^2 + t^2" if cubic else "r^2 + s^2"), "sum(r**2 for r in roots)"
    elif what == "cubes":
        target, expr = ("r^3 + s^3 + t^3" if cubic else "r^3 + s^3"), "sum(r**3 for r in roots)"
    else:
        target, expr = "(r - s)^2", "(roots[0] - roots[1])**2"
    problem = rng.choice([
        f"Let {roots_name} be the roots of {poly} = 0. Find {target}.",
        f"The polynomial {poly} has roots {roots_name}. Compute {target}.",
        f"If {roots_name} are the (possibly complex) roots of the equation {poly} = 0, what is {target}?",
    ])
    if cubic:
        steps = [
            Step("Find the roots numerically with numpy.", f"import numpy as np\nroots = np.roots({coeffs})\nprint(roots)"),
            Step("Use these roots; the imaginary parts cancel, so round.", f"print(round(({expr}).real))"),
        ]
    else:
        steps = [
            Step("Solve the quadratic exactly with sympy.", f"from sympy import symbols, solve, expand\nx = symbols('x')\nroots = solve({pcode}, x)\nprint(roots)"),
            Step("Combine the exact roots above and simplify.", f"print(expand({expr}))"),
        ]
    return _make("vieta_sum", rng, problem, value, steps)


def polynomial_roots_sum(rng: random.Random) -> TinyProblem:
    while True:
        roots = [rng.randint(-12, 12) for _ in range(rng.randint(2, 4))]
        extra = rng.random() < 0.4
        coeffs = [1]
        for r in roots:
            coeffs = _poly_mul(coeffs, [1, -r])
        if extra:
            coeffs = _poly_mul(coeffs, [1, 0, rng.randint(1, 9)])
        distinct = sorted(set(roots))
        what = rng.randrange(3)
        if what == 0:
            value, target, expr = sum(distinct), "the sum of its distinct integer roots", "sum(roots)"
        elif what == 1:
            value, target, expr = sum(r * r for r in distinct), "the sum of the squares of its distinct integer roots", "sum(r**2 for r in roots)"
        else:
            value, target, expr = sum(abs(r) for r in distinct), "the sum of the absolute values of its distinct integer roots", "sum(abs(r) for r in roots)"
        if value > 0 and len(coeffs) <= 7:
            break
    poly = _poly_text(coeffs)
    pcode = _poly_text(coeffs, code=True)
    problem = rng.choice([
        f"Consider p(x) = {poly}. Find {target}.",
        f"The polynomial {poly} factors over the integers. Compute {target}.",
        f"Let P(x) = {poly}. What is {target}?",
    ])
    if rng.random() < 0.5:
        steps = [
            Step("Solve p(x) = 0 with sympy.", f"from sympy import symbols, solve\nx = symbols('x')\nall_roots = solve({pcode}, x)\nprint(all_roots)"),
            Step("Keep the integer roots from that list.", f"roots = [r for r in all_roots if r.is_integer]\nprint({expr})"),
        ]
    else:
        bound = abs(coeffs[-1]) if coeffs[-1] else 200
        bound = min(max(bound, 13), 5000)
        steps = [
            Step("Integer roots divide the constant term; test candidates.", f"def p(x):\n    return {pcode}\nroots = [r for r in range(-{bound}, {bound + 1}) if p(r) == 0]\nprint(roots)"),
            Step("Use the integer roots found above.", f"print({expr})"),
        ]
    return _make("polynomial_roots_sum", rng, problem, value, steps)


def probability_fraction(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(3)
    if kind == 0:
        faces = rng.choice([4, 6, 8, 10, 12, 20])
        dice = rng.choice([2, 3] if faces <= 12 else [2, 3])
        dist = {0: 1}
        for _ in range(dice):
            new: dict[int, int] = {}
            for s, w in dist.items():
                for f in range(1, faces + 1):
                    new[s + f] = new.get(s + f, 0) + w
            dist = new
        target = rng.randint(dice + 1, dice * faces - 1)
        atleast = rng.random() < 0.5
        hits = sum(w for s, w in dist.items() if (s >= target if atleast else s == target))
        prob = Fraction(hits, faces**dice)
        cond = f"sum(roll) >= {target}" if atleast else f"sum(roll) == {target}"
        event = f"{'at least' if atleast else 'exactly'} {target}"
        problem = rng.choice([
            f"{dice} fair {faces}-sided dice (faces 1 to {faces}) are rolled. The probability that the total is {event} is p/q in lowest terms. Find p + q.",
            f"Roll {dice} fair dice, each numbered 1 through {faces}. If the probability that their sum is {event} equals m/n with gcd(m, n) = 1, what is m + n?",
            f"What is p + q, where p/q (reduced) is the probability that the sum of {dice} fair {faces}-sided dice is {event}?",
        ])
        code = f"from itertools import product\nfrom fractions import Fraction\nrolls = list(product(range(1, {faces + 1}), repeat={dice}))\nprob = Fraction(sum(1 for roll in rolls if {cond}), len(rolls))\nprint(prob)"
    elif kind == 1:
        n = rng.randint(4, 16)
        k = rng.randint(1, n - 1)
        dist = [1]
        for _ in range(n):
            dist = [(dist[i] if i < len(dist) else 0) + (dist[i - 1] if i >= 1 else 0) for i in range(len(dist) + 1)]
        prob = Fraction(sum(dist[k:]), 2**n)
        problem = rng.choice([
            f"A fair coin is tossed {n} times. The probability of getting at least {k} heads is p/q in lowest terms. Find p + q.",
            f"Toss {n} fair coins. If the probability that at least {k} of them land heads is m/n in lowest terms, find m + n.",
            f"The probability that {n} flips of a fair coin show {k} or more heads can be written as a/b with a, b coprime. Compute a + b.",
        ])
        code = f"import math\nfrom fractions import Fraction\nprob = Fraction(sum(math.comb({n}, i) for i in range({k}, {n + 1})), 2**{n})\nprint(prob)"
    else:
        red, blue = rng.randint(2, 20), rng.randint(2, 20)
        draw = rng.choice([2, 3])
        def all_same(count: int) -> Fraction:
            p = Fraction(1)
            for i in range(draw):
                p *= Fraction(count - i, red + blue - i)
            return p if count >= draw else Fraction(0)
        prob = all_same(red) + all_same(blue)
        problem = rng.choice([
            f"An urn has {red} red and {blue} blue balls. {draw} balls are drawn at random without replacement. The probability that all drawn balls have the same colour is p/q in lowest terms. Find p + q.",
            f"From a bag with {red} red balls and {blue} blue balls, {draw} are taken without replacement. If P(all the same colour) = m/n in lowest terms, what is m + n?",
            f"Draw {draw} balls without replacement from {red} red and {blue} blue ones. Write the probability that they are all one colour as a/b with gcd(a, b) = 1 and give a + b.",
        ])
        code = f"import math\nfrom fractions import Fraction\nprob = Fraction(math.comb({red}, {draw}) + math.comb({blue}, {draw}), math.comb({red + blue}, {draw}))\nprint(prob)"
    answer = prob.numerator + prob.denominator
    if rng.random() < 0.65:
        steps = [
            Step("Compute the exact probability as a Fraction.", code),
            Step("The fraction above is reduced; add numerator and denominator.", "print(prob.numerator + prob.denominator)"),
        ]
    else:
        steps = [Step("Compute the reduced probability, then p + q.", code + "\nprint(prob.numerator + prob.denominator)")]
    return _make("probability_fraction", rng, problem, answer, steps)


_TRIPLES = [(3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (9, 40, 41), (12, 35, 37), (11, 60, 61)]


def triangle_area(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(3)
    if kind == 0:
        while True:
            pts = [(rng.randint(-40, 40), rng.randint(-40, 40)) for _ in range(3)]
            (x1, y1), (x2, y2), (x3, y3) = pts
            twice = abs((x2 - x1) * (y3 - y1) - (x3 - x1) * (y2 - y1))
            if twice:
                break
        double = twice % 2 == 1 or rng.random() < 0.5
        answer = twice if double else twice // 2
        what = "twice the area" if double else "the area"
        pts_s = ", ".join(f"({x}, {y})" for x, y in pts)
        problem = rng.choice([
            f"A triangle has vertices {pts_s}. Find {what} of the triangle.",
            f"Compute {what} of the triangle whose vertices are the points {pts_s}.",
            f"The points {pts_s} form a triangle. What is {what} of this triangle?",
        ])
        final = "print(twice_area)" if double else "print(twice_area // 2)"
        code = f"pts = [{pts_s}]\ntwice_area = abs(sum(pts[i][0] * pts[(i + 1) % 3][1] - pts[(i + 1) % 3][0] * pts[i][1] for i in range(3)))\n{final}"
        step = Step("Use the shoelace formula.", code)
    elif kind == 1:
        t1, t2 = rng.sample(_TRIPLES, 2) if rng.random() < 0.7 else [rng.choice(_TRIPLES)] * 2
        o1, o2 = rng.randint(0, 1), rng.randint(0, 1)
        h1, w1, c1 = t1[o1], t1[1 - o1], t1[2]
        h2, w2, c2 = t2[o2], t2[1 - o2], t2[2]
        h = _lcm(h1, h2)
        s1, s2 = h // h1, h // h2
        k = rng.randint(1, 3)
        a, b, c = k * s1 * c1, k * s2 * c2, k * (s1 * w1 + s2 * w2)
        area2 = k * h * c  # twice the area: height k*h, base c
        if area2 % 2:
            a, b, c, area2 = 2 * a, 2 * b, 2 * c, 4 * area2
        answer = area2 // 2
        sides = [a, b, c]
        rng.shuffle(sides)
        problem = rng.choice([
            f"A triangle has side lengths {sides[0]}, {sides[1]} and {sides[2]}. Find its area.",
            f"What is the area of the triangle with sides {sides[0]}, {sides[1]}, {sides[2]}?",
            f"The sides of a triangle measure {sides[0]}, {sides[1]}, and {sides[2]}. Compute the area of the triangle.",
        ])
        step = rng.choice([
            Step("Heron's formula with exact integers.", f"import math\na, b, c = {sides[0]}, {sides[1]}, {sides[2]}\nsixteen_sq = (a + b + c) * (-a + b + c) * (a - b + c) * (a + b - c)\nprint(math.isqrt(sixteen_sq) // 4)"),
            Step("Heron's formula with the semiperimeter.", f"import math\na, b, c = {sides[0]}, {sides[1]}, {sides[2]}\ns = (a + b + c) / 2\narea = math.sqrt(s * (s - a) * (s - b) * (s - c))\nprint(round(area))"),
        ])
    else:
        x, y, z = rng.choice(_TRIPLES)
        k = rng.randint(1, 40)
        leg, other, hyp = (k * x, k * y, k * z) if rng.random() < 0.5 else (k * y, k * x, k * z)
        answer = leg * other // 2
        problem = rng.choice([
            f"A right triangle has hypotenuse {hyp} and one leg {leg}. Find its area.",
            f"In a right triangle one leg is {leg} and the hypotenuse is {hyp}. What is the area?",
            f"The hypotenuse of a right triangle is {hyp} and a leg measures {leg}. Compute the triangle's area.",
        ])
        step = Step("Find the other leg, then half the product of legs.", f"import math\nother = math.isqrt({hyp}**2 - {leg}**2)\nprint(other)\nprint({leg} * other // 2)")
    return _make("triangle_area", rng, problem, answer, [step])


def last_digits_power(rng: random.Random) -> TinyProblem:
    k = rng.randint(2, 4)
    a = rng.randint(2, 9999)
    b = rng.randint(10**3, 10**18)
    answer = _powmod(a, b, 10**k)
    names = {2: "two", 3: "three", 4: "four"}
    problem = rng.choice([
        f"What are the last {names[k]} digits of {a}^{b}? Give them as an integer.",
        f"Find the number formed by the last {k} digits of {a}^{b}.",
        f"Compute {a}^{b} mod {10**k}, i.e. the last {k} digits of {a}^{b}.",
        f"Find the remainder when {a}^{b} is divided by {10**k}.",
    ])
    code = rng.choice([f"print(pow({a}, {b}, 10**{k}))", f"modulus = 10**{k}\nprint(pow({a}, {b}, modulus))"])
    return _make("last_digits_power", rng, problem, answer, [Step("Last digits are a remainder mod a power of 10.", code)])


def totient(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(3)
    mod = False
    if kind == 2:
        n = rng.randint(200, 3000)
        phi = list(range(n + 1))
        for p in range(2, n + 1):
            if phi[p] == p:
                for j in range(p, n + 1, p):
                    phi[j] -= phi[j] // p
        value = sum(phi[1:])
        problem = rng.choice([
            f"Compute phi(1) + phi(2) + ... + phi({n}), where phi is Euler's totient function.",
            f"Find the sum of Euler's totient phi(k) over k = 1, ..., {n}.",
            f"Let S = sum of phi(k) for 1 <= k <= {n}. Find S.",
        ])
        problem, mod = _mod_wrap(rng, problem)
        good = Step("Add sympy's totient over the range.", f"from sympy import totient\ntotal = sum(totient(k) for k in range(1, {n + 1}))\n" + _pr("total", mod))
        bad = Step("Add math's totient over the range.", f"from math import totient\ntotal = sum(totient(k) for k in range(1, {n + 1}))\n" + _pr("total", mod), True)
    else:
        n = _random_composite(rng, 10**9 if kind == 0 else 10**5)
        value = n
        for p in _factor(n):
            value = value // p * (p - 1)
        problem = rng.choice([
            f"Compute Euler's totient phi({n}).",
            f"How many integers k with 1 <= k <= {n} satisfy gcd(k, {n}) = 1?",
            f"Find the number of positive integers not exceeding {n} that are relatively prime to {n}.",
        ])
        good = Step("Use sympy's totient.", f"from sympy import totient\nprint(totient({n}))")
        if kind == 1 and rng.random() < 0.5:
            good = Step("Count coprime k directly with gcd.", f"import math\nprint(sum(1 for k in range(1, {n + 1}) if math.gcd(k, {n}) == 1))")
        bad = Step("Use the totient from math.", f"from math import totient\nprint(totient({n}))", True)
    fix = Step("math has no totient; sympy provides it.", good.code if "sympy" in good.code else f"from sympy import totient\nprint(totient({n}))")
    steps = _recovering(rng, [good], bad, fix)
    answer = value % 1000 if mod else value
    return _make("totient", rng, problem, answer, steps)


def diophantine_count(rng: random.Random) -> TinyProblem:
    three = rng.random() < 0.4
    positive = rng.random() < 0.4
    if three:
        coefs = rng.sample(range(2, 25), 3)
        n = rng.randint(100, 1500)
    else:
        coefs = rng.sample(range(2, 60), 2)
        n = rng.randint(500, 100000)
    target = n - sum(coefs) if positive else n
    ways = [1] + [0] * max(target, 0)
    for c in coefs:
        for s in range(c, target + 1):
            ways[s] += ways[s - c]
    answer = ways[target] if target >= 0 else 0
    kind = "positive" if positive else "nonnegative"
    vars_ = ["x", "y", "z"][: len(coefs)]
    eq = " + ".join(f"{c}{v}" for c, v in zip(coefs, vars_)) + f" = {n}"
    tup = "(" + ", ".join(vars_) + ")"
    problem = rng.choice([
        f"{'How many ordered triples' if three else 'How many ordered pairs'} {tup} of {kind} integers satisfy {eq}?",
        f"Find the number of {kind} integer solutions {tup} of {eq}.",
        f"Count the solutions of {eq} in {kind} integers {', '.join(vars_)}.",
    ])
    lo = 1 if positive else 0
    if three:
        a, b, c = coefs
        code = (f"count = 0\nfor x in range({lo}, {n // a + 1}):\n    for y in range({lo}, ({n} - {a}*x) // {b} + 1):\n"
                f"        rest = {n} - {a}*x - {b}*y\n        if rest >= {c * lo} and rest % {c} == 0:\n            count += 1\nprint(count)")
    else:
        a, b = coefs
        code = f"count = sum(1 for x in range({lo}, {n // a + 1}) if ({n} - {a}*x) % {b} == 0 and ({n} - {a}*x) // {b} >= {lo})\nprint(count)"
    return _make("diophantine_count", rng, problem, answer, [Step("Loop over x (and y) and check the last variable.", code)])


def sum_of_squares_count(rng: random.Random) -> TinyProblem:
    if rng.random() < 0.6:
        while True:
            n = 1
            for p in rng.sample([5, 13, 17, 29, 37, 41, 53, 61, 73, 89, 97, 2, 3, 7], rng.randint(1, 4)):
                n *= p ** rng.randint(1, 2)
            n *= rng.choice([1, 1, 2, 4, 9])
            if 50 <= n <= 10**6:
                break
        d1 = d3 = 0
        for d in range(1, n + 1):
            if d * d > n:
                break
            if n % d == 0:
                for e in {d, n // d}:
                    if e % 4 == 1:
                        d1 += 1
                    elif e % 4 == 3:
                        d3 += 1
        answer = 4 * (d1 - d3)
        if answer == 0:
            return sum_of_squares_count(rng)
        problem = rng.choice([
            f"How many ordered pairs of integers (x, y) satisfy x^2 + y^2 = {n}?",
            f"Find the number of integer solutions (x, y) of x^2 + y^2 = {n}, counting signs and order.",
            f"In how many ways can {n} be written as x^2 + y^2 with x, y integers (order and signs matter)?",
        ])
        code = (f"import math\nn = {n}\ncount = 0\nfor x in range(-math.isqrt(n), math.isqrt(n) + 1):\n    rest = n - x*x\n    y = math.isqrt(rest)\n"
                "    if y * y == rest:\n        count += 1 if y == 0 else 2\nprint(count)")
        step = Step("Loop over x and check whether n - x^2 is a square.", code)
    else:
        limit = rng.randint(100, 20000)
        answer = 0
        for m in range(1, limit + 1):
            ok = True
            for p, e in _factor(m).items():
                if p % 4 == 3 and e % 2:
                    ok = False
                    break
            answer += ok
        problem = rng.choice([
            f"How many integers n with 1 <= n <= {limit} can be written as a^2 + b^2 for nonnegative integers a, b?",
            f"Count the positive integers not exceeding {limit} that are sums of two squares of integers (0 allowed).",
            f"Find how many of 1, 2, ..., {limit} are expressible as a sum of two perfect squares (0 counts as a square).",
        ])
        code = f"import math\nr = math.isqrt({limit})\nvalues = {{a*a + b*b for a in range(r + 1) for b in range(r + 1)}}\nprint(len([v for v in values if 1 <= v <= {limit}]))"
        step = Step("Collect all a^2 + b^2 up to the limit in a set.", code)
    return _make("sum_of_squares_count", rng, problem, answer, [step])


def perfect_squares_between(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(3)
    if kind == 0:
        lo = rng.randint(1, 10**11)
        hi = lo + rng.randint(10**3, 10**12)
        answer = _iroot(hi, 2) - _iroot(lo - 1, 2)
        problem = rng.choice([
            f"How many perfect squares lie between {lo} and {hi}, inclusive?",
            f"Count the integers k^2 (k a positive integer) with {lo} <= k^2 <= {hi}.",
            f"Find the number of perfect squares in the interval [{lo}, {hi}].",
        ])
        step = Step("Use integer square roots of the endpoints.", f"import math\nprint(math.isqrt({hi}) - math.isqrt({lo - 1}))")
    elif kind == 1:
        n = rng.randint(10**3, 10**8)
        answer = _iroot(n, 2) + _iroot(n, 3) - _iroot(n, 6)
        problem = rng.choice([
            f"How many positive integers up to {n} are perfect squares or perfect cubes?",
            f"Count the integers 1 <= m <= {n} that are a square or a cube of a positive integer.",
            f"Among 1, 2, ..., {n}, how many numbers are perfect squares or perfect cubes (or both)?",
        ])
        step = Step("Put all squares and cubes up to n in a set.", f"n = {n}\nsquares = {{k*k for k in range(1, 10**4 + 2) if k*k <= n}}\ncubes = {{k**3 for k in range(1, 500) if k**3 <= n}}\nprint(len(squares | cubes))")
    else:
        n = rng.randint(10**3, 10**9)
        answer = _iroot(n, 3)
        sq = rng.random() < 0.5
        if sq:
            answer = _iroot(n, 2) - _iroot(n, 6)
            problem = rng.choice([
                f"How many perfect squares not exceeding {n} are not perfect cubes?",
                f"Count the positive integers m <= {n} such that m is a perfect square but not a perfect cube.",
                f"Among the integers 1 through {n}, how many are squares of integers but not cubes of integers?",
            ])
            step = Step("Count squares, then subtract sixth powers.", f"import math\nsquares = math.isqrt({n})\nsixth = sum(1 for k in range(1, 100) if k**6 <= {n})\nprint(squares - sixth)")
        else:
            problem = rng.choice([
                f"How many perfect cubes are between 1 and {n}, inclusive?",
                f"Count the positive integers k with k^3 <= {n}.",
                f"Find the number of positive cubes not exceeding {n}.",
            ])
            step = Step("Count k with k^3 <= n by a loop.", f"count = 0\nwhile (count + 1)**3 <= {n}:\n    count += 1\nprint(count)")
    return _make("perfect_squares_between", rng, problem, answer, [step])


def _legendre(n: int, p: int) -> int:
    total, q = 0, p
    while q <= n:
        total += n // q
        q *= p
    return total


def factorial_trailing_zeros(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(3)
    steps: list[Step]
    if kind == 0:
        small = rng.random() < 0.4
        n = rng.randint(100, 3000) if small else rng.randint(10**3, 10**12)
        answer = min(_legendre(n, 2), _legendre(n, 5))
        problem = rng.choice([
            f"How many trailing zeros does {n}! have?",
            f"Find the number of zeros at the end of the decimal expansion of {n} factorial.",
            f"With how many consecutive zeros does {n}! end?",
        ])
        legendre = f"n, count, power = {n}, 0, 5\nwhile power <= n:\n    count += n // power\n    power *= 5\nprint(count)"
        if small:
            brute = f"import math\ndigits = str(math.factorial({n}))\nprint(len(digits) - len(digits.rstrip('0')))"
            steps = _recovering(
                rng, [rng.choice([Step("Count factors of 5 (Legendre).", legendre), Step("Compute n! exactly and count trailing zeros.", brute)])],
                Step("Compute n! and strip the zeros.", f"digits = str(factorial({n}))\nprint(len(digits) - len(digits.rstrip('0')))", True),
                Step("factorial is undefined; import it from math.", brute),
            )
        else:
            steps = [Step("Count factors of 5 with Legendre's formula.", legendre)]
    elif kind == 1:
        p = rng.choice([2, 3, 5, 7, 11, 13])
        n = rng.randint(100, 10**12)
        answer = _legendre(n, p)
        problem = rng.choice([
            f"Find the largest integer k such that {p}^k divides {n}!.",
            f"What is the exponent of the prime {p} in the prime factorization of {n}!?",
            f"Determine the highest power of {p} dividing {n} factorial (give the exponent).",
        ])
        steps = [Step("Legendre's formula: add floor(n / p^i).", f"n, p, total = {n}, {p}, 0\npower = p\nwhile power <= n:\n    total += n // power\n    power *= p\nprint(total)")]
    else:
        n = rng.randint(100, 10**9)
        b, pf = rng.choice([(12, {2: 2, 3: 1}), (18, {2: 1, 3: 2}), (6, {2: 1, 3: 1}), (20, {2: 2, 5: 1}), (45, {3: 2, 5: 1})])
        answer = min(_legendre(n, p) // e for p, e in pf.items())
        problem = rng.choice([
            f"Find the largest integer k such that {b}^k divides {n}!.",
            f"How many trailing zeros does {n}! have when written in base {b}?",
            f"What is the greatest k for which {n}! is divisible by {b}^k?",
        ])
        parts = ", ".join(f"{p}: {e}" for p, e in pf.items())
        steps = [Step(f"Legendre for each prime of {b}, divided by its exponent.",
                      f"def legendre(n, p):\n    total = 0\n    while n:\n        n //= p\n        total += n\n    return total\nprint(min(legendre({n}, p) // e for p, e in {{{parts}}}.items()))")]
    return _make("factorial_trailing_zeros", rng, problem, answer, steps)


def _collatz_ref(n: int, memo: dict[int, int]) -> int:
    path = []
    while n != 1 and n not in memo:
        path.append(n)
        n = 3 * n + 1 if n & 1 else n >> 1
    base = memo.get(n, 0)
    for k, v in enumerate(reversed(path)):
        memo[v] = base + k + 1
    return memo.get(path[0], 0) if path else base


COLLATZ_FN = "def collatz_steps(n):\n    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n        steps += 1\n    return steps"


def collatz_steps(rng: random.Random) -> TinyProblem:
    memo: dict[int, int] = {1: 0}
    rule = rng.choice([
        "The Collatz map sends n to n/2 if n is even and to 3n + 1 if n is odd.",
        "Starting from n, repeatedly halve n if it is even, or replace it by 3n + 1 if it is odd.",
        "Consider the process: if n is even, divide it by 2; otherwise, multiply by 3 and add 1.",
    ])
    kind = rng.randrange(3)
    if kind == 0:
        n = rng.randint(10, 10**6)
        answer = _collatz_ref(n, memo)
        problem = f"{rule} How many steps does it take to reach 1 starting from {n}?"
        steps = [Step("Simulate the process and count steps.", f"{COLLATZ_FN}\nprint(collatz_steps({n}))")]
    elif kind == 1:
        limit = rng.randint(20, 3000)
        lengths = [_collatz_ref(k, memo) for k in range(1, limit + 1)]
        best = max(lengths)
        answer = lengths.index(best) + 1
        problem = f"{rule} Which starting value n <= {limit} needs the most steps to reach 1? (If several, give the smallest.)"
        steps = [
            Step("Compute the step counts for all n up to the limit.", f"{COLLATZ_FN}\nlengths = [collatz_steps(n) for n in range(1, {limit + 1})]\nprint(max(lengths))"),
            Step("Find the first n achieving that maximum.", "print(lengths.index(max(lengths)) + 1)"),
        ]
    else:
        limit = rng.randint(20, 3000)
        t = rng.randint(10, 120)
        answer = sum(1 for k in range(1, limit + 1) if _collatz_ref(k, memo) > t)
        problem = f"{rule} For how many starting values 1 <= n <= {limit} does it take more than {t} steps to reach 1?"
        steps = [Step("Count step lengths above the threshold.", f"{COLLATZ_FN}\nprint(sum(1 for n in range(1, {limit + 1}) if collatz_steps(n) > {t}))")]
    return _make("collatz_steps", rng, problem, answer, steps)


def _palindromes_upto_digits(max_digits: int, base: int = 10) -> list[int]:
    """All palindromes with 1..max_digits digits in base, built from halves."""
    out = []
    for length in range(1, max_digits + 1):
        half = (length + 1) // 2
        start = base ** (half - 1) if half > 1 else 1
        for h in range(start, base**half):
            digits = _digits(h, base)
            full = digits + digits[: length // 2][::-1]
            value = 0
            for d in full:
                value = value * base + d
            out.append(value)
    return out


def palindromes_count(rng: random.Random) -> TinyProblem:
    kind = rng.randrange(3)
    if kind == 0:
        lo = rng.randint(1, 10**5)
        hi = lo + rng.randint(500, 10**5)
        answer = sum(1 for v in _palindromes_upto_digits(6) if lo <= v <= hi)
        problem = rng.choice([
            f"How many palindromic integers lie between {lo} and {hi}, inclusive?",
            f"Count the numbers n with {lo} <= n <= {hi} that read the same forwards and backwards.",
            f"A palindrome reads the same in both directions. How many palindromes are in [{lo}, {hi}]?",
        ])
        cond = "str(n) == str(n)[::-1]"
    elif kind == 1:
        k = rng.randint(2, 40)
        digits = rng.randint(3, 5)
        answer = sum(1 for v in _palindromes_upto_digits(digits) if v >= 10 ** (digits - 1) and v % k == 0)
        lo, hi = 10 ** (digits - 1), 10**digits - 1
        problem = rng.choice([
            f"How many {digits}-digit palindromes are divisible by {k}?",
            f"Count the palindromic numbers with exactly {digits} digits that are multiples of {k}.",
            f"Find the number of {digits}-digit integers that read the same backwards and are divisible by {k}.",
        ])
        cond = f"n % {k} == 0 and str(n) == str(n)[::-1]"
    else:
        hi = rng.randint(100, 10**5)
        lo = 1
        answer = sum(1 for v in _palindromes_upto_digits(17, 2) if v <= hi)
        problem = rng.choice([
            f"How many positive integers n <= {hi} have a binary representation that is a palindrome?",
            f"Count the integers 1 <= n <= {hi} whose base-2 expansion reads the same forwards and backwards.",
            f"Find the number of binary palindromes between 1 and {hi}.",
        ])
        cond = "f'{n:b}' == f'{n:b}'[::-1]"
    code = f"count = sum(1 for n in range({lo}, {hi + 1}) if {cond})\nprint(count)"
    return _make("palindromes_count", rng, problem, answer, [Step(rng.choice(["Check every number in the range.", "Brute force: compare each string with its reverse."]), code)])


# --------------------------------------------------------------------------
# one-line arithmetic and algebra (issue 21): the short questions a first-time user types
# ("What is 17*23?"). One cell each, Python computes and prints the integer answer.


def _num(rng: random.Random, min_digits: int, max_digits: int) -> int:
    """A random integer with ``min_digits``..``max_digits`` digits (one-digit numbers are 2..9)."""
    d = rng.randint(min_digits, max_digits)
    return rng.randint(2 if d == 1 else 10 ** (d - 1), 10**d - 1)


def _signed(value: int) -> str:
    """`` + 5`` or `` - 5`` (a constant term after another term)."""
    return f" + {value}" if value >= 0 else f" - {-value}"


def _nonzero(rng: random.Random, hi: int) -> int:
    return rng.choice([1, -1]) * rng.randint(1, hi)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


_TIMES = ("*", " * ", " × ", " \\times ", " times ", " multiplied by ")


def product(rng: random.Random) -> TinyProblem:
    kind = rng.random()
    if kind < 0.55:
        a, b = _num(rng, 1, 4), _num(rng, 1, 4)
        answer = sum(a for _ in range(b))  # reference: repeated addition
        expr = f"{a}{rng.choice(_TIMES)}{b}"
        problem = rng.choice([
            f"What is {expr}?",
            f"Compute {expr}.",
            f"Calculate {expr}.",
            f"Multiply {a} by {b}.",
            f"What is the product of {a} and {b}?",
            f"{expr} = ?",
            f"{expr}",
            f"what is {expr}",
            f"Evaluate ${a} \\times {b}$.",
        ])
        code = rng.choice([f"print({a} * {b})", f"a, b = {a}, {b}\nprint(a * b)"])
    elif kind < 0.8:
        factors = [_num(rng, 1, 3) for _ in range(3)]
        answer = 1
        for f in factors:
            answer = sum(answer for _ in range(f))
        sym = rng.choice(_TIMES[:5])
        expr = sym.join(map(str, factors))
        problem = rng.choice([
            f"What is {expr}?",
            f"Compute {expr}.",
            f"Calculate {expr}.",
            f"Find the product of {factors[0]}, {factors[1]} and {factors[2]}.",
            f"{expr}?",
        ])
        code = f"print({' * '.join(map(str, factors))})"
    else:
        a, b, c, d = (_num(rng, 1, 3) for _ in range(4))
        sign = rng.choice("+-")
        if sign == "-" and a * b < c * d:
            a, b, c, d = c, d, a, b
        first, second = sum(a for _ in range(b)), sum(c for _ in range(d))
        answer = first + second if sign == "+" else first - second
        sym = rng.choice(_TIMES[:4])
        expr = f"{a}{sym}{b} {sign} {c}{sym}{d}"
        problem = rng.choice([f"What is {expr}?", f"Compute {expr}.", f"Calculate {expr}.", f"{expr} = ?"])
        code = f"print({a} * {b} {sign} {c} * {d})"
    thought = rng.choice(["Multiply directly in Python.", "Let Python do the arithmetic.", "Evaluate the product exactly."])
    return _make("product", rng, problem, answer, [Step(thought, code)])


def _power_ref(base: int, exp: int) -> int:
    value = 1
    for _ in range(exp):
        value *= base
    return value


def _small_power(rng: random.Random, limit: int) -> tuple[int, int]:
    """A base and exponent >= 2 with base**exp < limit."""
    base = rng.randint(2, 12) if rng.random() < 0.7 else rng.randint(13, 99)
    top = 2
    while _power_ref(base, top + 1) < limit:
        top += 1
    return base, rng.randint(2, top)


def power(rng: random.Random) -> TinyProblem:
    kind = rng.random()
    mod = False
    if kind < 0.25:
        b = _num(rng, 1, 4)
        answer = _power_ref(b, 2)
        problem = rng.choice([
            f"What is {b} squared?",
            f"Find {b} squared.",
            f"What is the square of {b}?",
            f"Compute {b}^2.",
            f"{b} squared",
            f"{b}^2 = ?",
        ])
        code = rng.choice([f"print({b}**2)", f"print({b} * {b})"])
    elif kind < 0.4:
        b = _num(rng, 1, 4)
        answer = _power_ref(b, 3)
        problem = rng.choice([
            f"What is {b} cubed?",
            f"Find {b} cubed.",
            f"What is the cube of {b}?",
            f"Compute {b}^3.",
            f"{b} cubed?",
        ])
        code = rng.choice([f"print({b}**3)", f"print(pow({b}, 3))"])
    elif kind < 0.8:
        b, e = _small_power(rng, 10**12)
        answer = _power_ref(b, e)
        problem = rng.choice([
            f"What is {b}^{e}?",
            f"Compute {b}**{e}.",
            f"What is {b} to the power of {e}?",
            f"Calculate {b} raised to the power {e}.",
            f"Find {b} to the {_ordinal(e)} power.",
            f"Evaluate ${b}^{{{e}}}$.",
            f"{b}^{e}",
            f"what is {b}**{e}",
        ])
        code = rng.choice([f"print({b}**{e})", f"print(pow({b}, {e}))"])
    elif kind < 0.9:
        (b, e), (c, f) = _small_power(rng, 10**11), _small_power(rng, 10**11)
        sign = rng.choice("+-")
        if sign == "-" and _power_ref(b, e) < _power_ref(c, f):
            b, e, c, f = c, f, b, e
        answer = _power_ref(b, e) + _power_ref(c, f) if sign == "+" else _power_ref(b, e) - _power_ref(c, f)
        expr = f"{b}^{e} {sign} {c}^{f}"
        problem = rng.choice([f"What is {expr}?", f"Compute {expr}.", f"{expr} = ?"])
        code = f"print({b}**{e} {sign} {c}**{f})"
    else:
        b = rng.randint(2, 99)
        low = 2
        while _power_ref(b, low) < 10**12:
            low += 1
        e = rng.randint(low, 200)
        mod, answer = True, _powmod(b, e, 1000)
        problem = rng.choice([f"What is {b}^{e}?", f"Compute {b}**{e}.", f"Find {b} to the power of {e}."])
        problem = f"{problem} {rng.choice(MOD_SUFFIXES)}"
        code = rng.choice([f"print({b}**{e} % 1000)", f"print(pow({b}, {e}, 1000))"])
    thought = rng.choice(["Compute the power exactly in Python.", "Python integers are exact; evaluate the power.",
                          "Let Python evaluate the power."])
    if mod:
        thought = "Reduce the power modulo 1000 in Python."
    return _make("power", rng, problem, answer, [Step(thought, code)])


def remainder(rng: random.Random) -> TinyProblem:
    kind = rng.random()
    m = rng.choice([rng.randint(2, 12), rng.randint(2, 100), rng.randint(100, 999)])
    if kind < 0.65:
        a = _num(rng, 2, 7)
        while a <= m:
            a = _num(rng, 2, 7)
        answer = a - m * (a // m)
        problem = rng.choice([
            f"What is the remainder when {a} is divided by {m}?",
            f"Compute {a} mod {m}.",
            f"Find {a} % {m}.",
            f"What is {a} modulo {m}?",
            f"What remainder does {a} leave when divided by {m}?",
            f"What is the remainder of {a} divided by {m}?",
            f"{a} mod {m}",
            f"{a} % {m} = ?",
        ])
        code = rng.choice([f"print({a} % {m})", f"q, r = divmod({a}, {m})\nprint(r)"])
    elif kind < 0.9:
        b, e = rng.randint(2, 20), rng.randint(2, 40)
        answer = _powmod(b, e, m)
        problem = rng.choice([
            f"What is the remainder of {b}^{e} divided by {m}?",
            f"What is the remainder when {b}^{e} is divided by {m}?",
            f"Find {b}^{e} mod {m}.",
            f"Compute {b}**{e} % {m}.",
        ])
        code = rng.choice([f"print({b}**{e} % {m})", f"print(pow({b}, {e}, {m}))"])
    else:
        a, b = _num(rng, 2, 4), _num(rng, 2, 4)
        answer = (a % m) * (b % m) % m
        problem = rng.choice([
            f"What is the remainder when {a} × {b} is divided by {m}?",
            f"Find ({a} * {b}) mod {m}.",
            f"Compute {a}*{b} % {m}.",
        ])
        code = f"print({a} * {b} % {m})"
    thought = rng.choice(["Use Python's % operator for the remainder.", "Compute the remainder directly in Python."])
    return _make("remainder", rng, problem, answer, [Step(thought, code)])


_NICE_PERCENTS = (5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90)
_DECIMAL_PERCENTS = (Fraction(1, 2), Fraction(5, 2), Fraction(15, 2), Fraction(25, 2), Fraction(75, 2), Fraction(125, 2),
                  Fraction(35, 4), Fraction(1, 4))


def _pct_text(p: Fraction) -> str:
    return str(p.numerator) if p.denominator == 1 else str(p.numerator / p.denominator)


def _multiple_for(rng: random.Random, p: Fraction, limit: int) -> int:
    """A positive x <= limit (roughly) such that p% of x is an integer."""
    den = (p / 100).denominator
    return den * rng.randint(1, max(1, limit // den))


def percentage(rng: random.Random) -> TinyProblem:
    kind = rng.random()
    thought = rng.choice(["Compute it exactly in Python.", "Work with exact integers or fractions.", "Translate the percentage into arithmetic."])
    if kind < 0.45:
        r = rng.random()
        p = Fraction(rng.choice(_NICE_PERCENTS) if r < 0.4 else rng.randint(1, 99) if r < 0.75
                     else rng.choice([110, 120, 125, 150, 175, 200, 250, 300]) if r < 0.85 else rng.choice(_DECIMAL_PERCENTS))
        x = _multiple_for(rng, p, rng.choice([200, 1000, 5000]))
        answer = p * x / 100
        pt = _pct_text(p)
        problem = rng.choice([
            f"What is {pt}% of {x}?",
            f"Find {pt} percent of {x}.",
            f"Compute {pt}% of {x}.",
            f"How much is {pt}% of {x}?",
            f"Calculate {pt} percent of {x}.",
            f"{pt}% of {x}?",
            f"what's {pt}% of {x}",
        ])
        if p.denominator == 1:
            code = rng.choice([f"print({x} * {p} // 100)", f"from fractions import Fraction\nprint(Fraction({p}, 100) * {x})"])
        else:
            code = f"from fractions import Fraction\nprint(Fraction('{pt}') * {x} / 100)"
    elif kind < 0.7:
        up = rng.random() < 0.5
        p = Fraction(rng.choice(_NICE_PERCENTS) if rng.random() < 0.6 else rng.randint(1, 99))
        x = _multiple_for(rng, p, rng.choice([200, 1000, 5000]))
        answer = x + p * x / 100 if up else x - p * x / 100
        pt = _pct_text(p)
        if up:
            problem = rng.choice([
                f"A price of {x} is increased by {pt}%. What is the new price?",
                f"What is {x} increased by {pt}%?",
                f"Increase {x} by {pt}%.",
                f"A town of {x} people grows by {pt}%. What is its new population?",
            ])
        else:
            problem = rng.choice([
                f"A price of {x} is decreased by {pt}%. What is the new price?",
                f"What is {x} decreased by {pt}%?",
                f"Decrease {x} by {pt}%.",
                f"An item costs {x} dollars and is discounted by {pt}%. What does it cost now?",
            ])
        op = "+" if up else "-"
        code = rng.choice([f"print({x} * (100 {op} {p}) // 100)", f"new = {x} {op} {x} * {p} // 100\nprint(new)"])
    elif kind < 0.9:
        p = Fraction(rng.choice(_NICE_PERCENTS) if rng.random() < 0.5 else rng.randint(1, 250))
        x = _multiple_for(rng, p, rng.choice([200, 1000]))
        y = p * x / 100
        answer = y * 100 / x
        problem = rng.choice([
            f"What percent of {x} is {y}?",
            f"{y} is what percent of {x}?",
            f"What percentage of {x} is {y}?",
            f"Express {y} as a percentage of {x}.",
        ])
        code = rng.choice([f"print({y} * 100 // {x})", f"from fractions import Fraction\nprint(Fraction({y}, {x}) * 100)"])
    else:
        p = Fraction(rng.choice(_NICE_PERCENTS) if rng.random() < 0.6 else rng.randint(1, 99))
        whole = _multiple_for(rng, p, rng.choice([200, 1000, 5000]))
        y = p * whole / 100
        answer = y * 100 / p
        problem = rng.choice([
            f"{y} is {p}% of what number?",
            f"{p}% of a number is {y}. What is the number?",
            f"If {p} percent of a number is {y}, what is the number?",
        ])
        code = rng.choice([f"print({y} * 100 // {p})", f"from fractions import Fraction\nprint(Fraction({y} * 100, {p}))"])
    assert answer.denominator == 1
    return _make("percentage", rng, problem, int(answer), [Step(thought, code)])


def _lin_term(a: int, var: str, code: bool = False) -> str:
    """``3x`` / ``x`` / ``-x`` / ``-3x`` (``3*x`` in code)."""
    return {1: var, -1: f"-{var}"}.get(a, f"{a}*{var}" if code else f"{a}{var}")


def linear_equation(rng: random.Random) -> TinyProblem:
    var = rng.choice("xxxxyyntkmz")
    s = rng.randint(1, 40) if rng.random() < 0.8 else rng.randint(-20, 0)
    kind = rng.random()
    if kind < 0.45:
        # a v + b = c
        a = rng.randint(2, 20) if rng.random() < 0.85 else rng.choice([1, -1, -2, -3, -5, -7])
        b = _nonzero(rng, 60)
        A, B, C, D = Fraction(a), Fraction(b), Fraction(0), Fraction(a * s + b)
        text = f"{_lin_term(a, var)}{_signed(b)} = {a * s + b}"
        lhs, rhs = f"{_lin_term(a, var, True)}{_signed(b)}", f"{a * s + b}"
    elif kind < 0.7:
        # a v + b = c v + d
        a = rng.randint(1, 15)
        c = rng.choice([x for x in range(1, 16) if x != a])
        b = _nonzero(rng, 60)
        d = a * s + b - c * s
        A, B, C, D = Fraction(a), Fraction(b), Fraction(c), Fraction(d)
        text = f"{_lin_term(a, var)}{_signed(b)} = {_lin_term(c, var)}{_signed(d)}"
        lhs, rhs = f"{_lin_term(a, var, True)}{_signed(b)}", f"{_lin_term(c, var, True)}{_signed(d)}"
    elif kind < 0.85:
        # v/k + b = c
        k = rng.randint(2, 12)
        s = k * rng.randint(-5, 30)
        b = _nonzero(rng, 60)
        A, B, C, D = Fraction(1, k), Fraction(b), Fraction(0), Fraction(s // k + b)
        text = f"{var}/{k}{_signed(b)} = {s // k + b}"
        lhs, rhs = f"{var}/{k}{_signed(b)}", f"{s // k + b}"
    else:
        # a (v + b) = c
        a = rng.randint(2, 12)
        b = _nonzero(rng, 20)
        A, B, C, D = Fraction(a), Fraction(a * b), Fraction(0), Fraction(a * (s + b))
        text = f"{a}({var}{_signed(b)}) = {a * (s + b)}"
        lhs, rhs = f"{a}*({var}{_signed(b)})", f"{a * (s + b)}"
    solution = (D - B) / (A - C)  # reference: A v + B = C v + D
    assert solution.denominator == 1
    problem = rng.choice([
        f"Solve {text}.",
        f"Solve {text} for {var}.",
        f"If {text}, what is {var}?",
        f"Find {var} such that {text}.",
        f"What value of {var} satisfies {text}?",
        f"Find {var} if {text}.",
        f"solve {text}",
        f"{text}, {var} = ?",
    ])
    step = rng.choice([
        Step("Solve the equation with sympy.",
             f"from sympy import Eq, solve, symbols\n{var} = symbols('{var}')\nprint(solve(Eq({lhs}, {rhs}), {var})[0])"),
        Step("Move everything to one side and solve with sympy.",
             f"from sympy import solve, symbols\n{var} = symbols('{var}')\nprint(solve({lhs} - ({rhs}), {var})[0])"),
    ])
    return _make("linear_equation", rng, problem, int(solution), [step])


_FRACTION_WORDS = {
    2: ("half", "halves"), 3: ("third", "thirds"), 4: ("quarter", "quarters"), 5: ("fifth", "fifths"),
    6: ("sixth", "sixths"), 7: ("seventh", "sevenths"), 8: ("eighth", "eighths"), 9: ("ninth", "ninths"),
    10: ("tenth", "tenths"), 12: ("twelfth", "twelfths"), 100: ("hundredth", "hundredths"),
}
_unit_sums_cache: list[tuple[int, ...]] = []


def _integer_unit_sums() -> list[tuple[int, ...]]:
    """Sorted tuples of 3 or 4 denominators in 2..24 whose unit fractions add up to an integer."""
    if not _unit_sums_cache:
        from itertools import combinations_with_replacement

        for size in (3, 4):
            for dens in combinations_with_replacement(range(2, 25), size):
                total = Fraction(0)
                for d in dens:
                    total += Fraction(1, d)
                if total.denominator == 1:
                    _unit_sums_cache.append(dens)
    return _unit_sums_cache


def unit_fraction(rng: random.Random) -> TinyProblem:
    kind = rng.random()
    imp = "from fractions import Fraction\n"
    thought = rng.choice(["Use exact fractions in Python.", "Fraction keeps the arithmetic exact.", "Compute it exactly with Fraction."])
    if kind < 0.35:
        k = rng.choice(list(_FRACTION_WORDS)) if rng.random() < 0.6 else rng.randint(2, 25)
        whole = k * rng.randint(1, 300)
        answer = whole // k
        forms = [f"What is 1/{k} of {whole}?", f"Find 1/{k} of {whole}.", f"1/{k} of {whole}?", f"Compute 1/{k} of {whole}."]
        if k in _FRACTION_WORDS:
            word = _FRACTION_WORDS[k][0]
            forms += [f"What is half of {whole}?"] if k == 2 else [f"What is one {word} of {whole}?", f"What is a {word} of {whole}?"]
        problem = rng.choice(forms)
        code = rng.choice([f"{imp}print(Fraction(1, {k}) * {whole})", f"print({whole} // {k})"])
    elif kind < 0.5:
        a, b = rng.randint(2, 10), rng.randint(2, 10)
        whole = a * b * rng.randint(1, 100)
        answer = whole // a // b
        problem = rng.choice([f"What is 1/{a} of 1/{b} of {whole}?", f"Find 1/{a} of 1/{b} of {whole}.",
                              f"Compute 1/{a} * 1/{b} * {whole}."])
        code = f"{imp}print(Fraction(1, {a}) * Fraction(1, {b}) * {whole})"
    elif kind < 0.75:
        if rng.random() < 0.4:
            dens = list(rng.choice(_integer_unit_sums()))
            rng.shuffle(dens)
            mult, signs = 1, ["+"] * len(dens)
        else:
            dens = [rng.randint(2, 12) for _ in range(rng.randint(2, 3))]
            signs = ["+"] * len(dens)
            if len(dens) == 2 and dens[0] < dens[1] and rng.random() < 0.4:
                signs[1] = "-"
            mult = _lcm(*dens) * rng.randint(1, 12)
        total = Fraction(0)
        for sign, d in zip(signs, dens):
            total += Fraction(1, d) if sign == "+" else -Fraction(1, d)
        answer = total * mult
        assert answer.denominator == 1
        answer = int(answer)
        shown = f"1/{dens[0]}" + "".join(f" {sign} 1/{d}" for sign, d in zip(signs[1:], dens[1:]))
        fracs = f"Fraction(1, {dens[0]})" + "".join(f" {sign} Fraction(1, {d})" for sign, d in zip(signs[1:], dens[1:]))
        if mult == 1:
            problem = rng.choice([f"Compute {shown}.", f"What is {shown}?", f"{shown} = ?", f"Find {shown}."])
            code = f"{imp}print({fracs})"
        else:
            problem = rng.choice([f"What is {mult} × ({shown})?", f"Compute {mult}*({shown}).",
                                  f"Multiply ({shown}) by {mult}.", f"What is ({shown}) of {mult}?"])
            code = f"{imp}print({mult} * ({fracs}))"
    else:
        k = rng.choice(list(_FRACTION_WORDS)[1:]) if rng.random() < 0.6 else rng.randint(2, 20)
        whole = rng.randint(1, 60)
        answer = whole * k
        forms = [f"How many 1/{k}s are in {whole}?", f"What is {whole} divided by 1/{k}?", f"{whole} ÷ 1/{k} = ?"]
        if k in _FRACTION_WORDS:
            plural = _FRACTION_WORDS[k][1]
            forms += [f"How many {plural} are in {whole}?", f"How many {plural} make {whole} whole{'s' if whole > 1 else ''}?"]
        problem = rng.choice(forms)
        code = rng.choice([f"{imp}print({whole} / Fraction(1, {k}))", f"print({whole} * {k})"])
    return _make("unit_fraction", rng, problem, answer, [Step(thought, code)])


FAMILIES: dict[str, Callable[[random.Random], TinyProblem]] = {
    f.__name__: f
    for f in (
        prime_count_range, prime_sum_range, divisor_count, divisor_sum, gcd_lcm, mod_power, mod_inverse,
        digit_sum_power, base_conversion, base_divisor, fibonacci_mod, recurrence_mod, binomial_mod,
        lattice_points_circle, count_with_property, arithmetic_series_sum, geometric_series_sum, vieta_sum,
        polynomial_roots_sum, probability_fraction, triangle_area, last_digits_power, totient,
        diophantine_count, sum_of_squares_count, perfect_squares_between, factorial_trailing_zeros,
        collatz_steps, palindromes_count,
        # one-line arithmetic and algebra (issue 21); appended so the earlier entries keep their order
        product, power, remainder, percentage, linear_equation, unit_fraction,
    )
}

TWO_CELL_FAMILIES = ("prime_sum_range", "divisor_count", "base_conversion", "base_divisor", "recurrence_mod",
                     "vieta_sum", "polynomial_roots_sum", "probability_fraction", "collatz_steps")
ERROR_RECOVERY_FAMILIES = ("prime_count_range", "mod_inverse", "binomial_mod", "totient", "factorial_trailing_zeros")


def _schedule(seed: int, n: int, names: list[str]):
    """``generate``'s draw order: (family name, per-problem RNG seed) for problem 0..n-1."""
    rng = random.Random(seed)
    order: list[str] = []
    for _ in range(n):
        if not order:
            order = names[:]
            rng.shuffle(order)
        yield order.pop(), rng.getrandbits(64)


def _names(families: Sequence[str] | None) -> list[str]:
    names = list(families) if families is not None else list(FAMILIES)
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        raise KeyError(f"unknown families: {unknown}")
    return names


def generate(seed: int, n: int, families: Sequence[str] | None = None) -> list[TinyProblem]:
    """Deterministic for a seed: round-robin over a seeded shuffle of the families."""
    return [FAMILIES[name](random.Random(sub)) for name, sub in _schedule(seed, n, _names(families))]


def generated_texts(seed: int, n: int, families: Sequence[str] | None = None, only: Sequence[str] | None = None) -> set[str]:
    """The problem texts of ``generate(seed, n, families)`` whose family is in ``only`` (all if None),
    without building the other families' problems (each problem has its own RNG seed)."""
    names, keep = _names(families), set(only if only is not None else FAMILIES)
    return {FAMILIES[name](random.Random(sub)).problem for name, sub in _schedule(seed, n, names) if name in keep}


ONELINER_FAMILIES = ("product", "power", "remainder", "percentage", "linear_equation", "unit_fraction")
ONELINERS_SEED = 21_000_021
"""Seed of ``examples/tiny-oneliners.jsonl`` (training data uses ``--seed 0``)."""


def make_oneliners(seed: int = ONELINERS_SEED, n: int = 120, train_seed: int | None = 0,
                   train_problems: int = 60000) -> list[dict]:
    """A held-out set of one-line problems: ``n // 6`` of each ``ONELINER_FAMILIES`` family, as rows
    ``{"id", "problem", "answer", "family"}`` (the format of ``examples/tiny-heldout.jsonl``).

    Problems come from ``generate(seed, ..., ONELINER_FAMILIES)`` in order; a text seen before, or one
    that the training data could contain, is skipped: the one-liners of ``generate(train_seed,
    train_problems)`` (what ``jobs/train_tiny.py data --seed 0 --problems 60000`` builds from all the
    families) and of ``generate(train_seed, train_problems, ONELINER_FAMILIES)``. ``train_seed=None``
    skips that check."""
    per = n // len(ONELINER_FAMILIES)
    if per * len(ONELINER_FAMILIES) != n:
        raise ValueError(f"n must be a multiple of {len(ONELINER_FAMILIES)}")
    seen: set[str] = set()
    if train_seed is not None:
        seen |= generated_texts(train_seed, train_problems, None, ONELINER_FAMILIES)
        seen |= generated_texts(train_seed, train_problems, ONELINER_FAMILIES)
    picked: list[TinyProblem] = []
    pool = 4 * n
    while len(picked) < n:
        picked, taken, counts = [], set(seen), dict.fromkeys(ONELINER_FAMILIES, 0)
        for p in generate(seed, pool, ONELINER_FAMILIES):  # a prefix of any longer stream
            if counts[p.family] < per and p.problem not in taken:
                taken.add(p.problem)
                counts[p.family] += 1
                picked.append(p)
        pool *= 2
    return [{"id": f"{p.family}-{i}", "problem": p.problem, "answer": str(p.answer), "family": p.family}
            for i, p in enumerate(picked)]
