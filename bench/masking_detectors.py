"""False positives and speed of the card-data content detectors (``gateway/masking/detect.py``, issue 5).

(a) False-positive rate: per kind of ordinary digit run (Unix timestamps, phone numbers, order ids, IBANs,
UUIDs), N generated values, one per line, and the fraction of lines in which ``find_pans`` reports a PAN.
Random 13-19 digit ids pass Luhn one time in ten and often start like some brand's IIN: those hits are
real properties of the rule, reported as measured.

(b) Speed in MB/s over a 64 MB buffer of CSV-like rows (id, name, date, amount, currency, city) without card
numbers, and over one where 1% of the rows carry a published test card number (plain, spaced or dashed):
the prefilter alone (hyperscan, and the ``re`` fallback), ``find_pans`` and ``find_card_data`` with each,
and ``mask``. Best of ``--rounds``; no card number is generated that is not a brand's published test number.

    .venv/bin/python bench/masking_detectors.py [--n 200000] [--mb 64] [--rounds 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import bisect
import functools
import random
import string
import time
import uuid
from collections.abc import Callable

from gateway.masking import detect as det
from pcigate.devstack.testcards import TEST_PANS

# ------------------------------------------------------------------------------------------ generators


def timestamps_s(rng: random.Random) -> str:
    return str(rng.randint(1_000_000_000, 2_000_000_000))


def timestamps_ms(rng: random.Random) -> str:
    return str(rng.randint(1_000_000_000_000, 2_000_000_000_000))


# (country code, national significant number length, national trunk prefix, grouping of the national form)
_PHONE_PLANS = [
    ("1", 10, "", (3, 3, 4)),  # NANP
    ("44", 10, "0", (4, 6)),  # UK
    ("49", 11, "0", (3, 8)),  # Germany (mobile 15x/16x/17x)
    ("33", 9, "0", (1, 2, 2, 2, 2)),  # France
    ("61", 9, "0", (1, 4, 4)),  # Australia
    ("86", 11, "", (3, 4, 4)),  # China mobile
    ("91", 10, "0", (5, 5)),  # India
    ("55", 11, "0", (2, 5, 4)),  # Brazil
    ("7", 10, "8", (3, 3, 2, 2)),  # Russia
]


def _phone_parts(rng: random.Random) -> tuple[str, str, str, tuple[int, ...]]:
    cc, n, trunk, groups = rng.choice(_PHONE_PLANS)
    nsn = str(rng.randint(1, 9)) + "".join(rng.choices(string.digits, k=n - 1))
    return cc, nsn, trunk, groups


def phones_e164(rng: random.Random) -> str:
    cc, nsn, _, _ = _phone_parts(rng)
    return "+" + cc + nsn


def phones_national(rng: random.Random) -> str:
    """National or international written forms with spaces or dashes between groups."""
    cc, nsn, trunk, groups = _phone_parts(rng)
    parts, k = [], 0
    for g in groups:
        parts.append(nsn[k : k + g])
        k += g
    sep = rng.choice([" ", "-"])
    if rng.random() < 0.5:
        return f"+{cc} " + sep.join(parts)
    return trunk + sep.join(parts)


def order_ids(rng: random.Random) -> str:
    return "".join(rng.choices(string.digits, k=rng.randint(13, 19)))


def _iban(country: str, bban: str) -> str:
    """ISO 13616 check digits: move the country and "00" to the end, letters as 10..35, 98 - mod 97."""
    moved = bban + country + "00"
    numeric = "".join(str(int(c, 36)) for c in moved)
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


def _printed(iban: str, rng: random.Random) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.5 else iban


def ibans_de(rng: random.Random) -> str:
    blz = str(rng.randint(10_000_000, 89_999_999))  # Bankleitzahl: first digit 1-8
    return _printed(_iban("DE", blz + "".join(rng.choices(string.digits, k=10))), rng)


def ibans_gb(rng: random.Random) -> str:
    bank = "".join(rng.choices(string.ascii_uppercase, k=4))
    sort_code = "".join(rng.choices(string.digits, k=6))
    return _printed(_iban("GB", bank + sort_code + "".join(rng.choices(string.digits, k=8))), rng)


def uuids(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


KINDS: list[tuple[str, Callable[[random.Random], str]]] = [
    ("timestamp s (10 digits)", timestamps_s),
    ("timestamp ms (13 digits)", timestamps_ms),
    ("phone E.164", phones_e164),
    ("phone national, spaced/dashed", phones_national),
    ("order id, 13-19 random digits", order_ids),
    ("IBAN DE (print or electronic)", ibans_de),
    ("IBAN GB (print or electronic)", ibans_gb),
    ("UUID v4", uuids),
]


def false_positives(n: int, seed: int) -> None:
    print(f"(a) false positives: {n:,} values per kind, one per line, find_pans over the whole buffer")
    print(f"{'kind':32} {'lines with a PAN':>17} {'rate':>9}  brands")
    for name, gen in KINDS:
        rng = random.Random(f"{seed}:{name}")
        lines = [f"ref={gen(rng)};" for _ in range(n)]
        starts, pos = [], 0
        for line in lines:
            starts.append(pos)
            pos += len(line) + 1
        buf = "\n".join(lines).encode()
        hit_lines: set[int] = set()
        brands: dict[str, int] = {}
        for span in det.find_pans(buf):
            line_no = bisect.bisect_right(starts, span.start) - 1
            if line_no not in hit_lines:
                hit_lines.add(line_no)
                brands[span.brand or "?"] = brands.get(span.brand or "?", 0) + 1
        top = ", ".join(f"{b} {c}" for b, c in sorted(brands.items(), key=lambda kv: -kv[1])[:4])
        print(f"{name:32} {len(hit_lines):>17,} {len(hit_lines) / n:>9.4%}  {top}")


# --------------------------------------------------------------------------------------------- speed

_FIRST = ["Jane", "John", "Amira", "Kenji", "Lena", "Marco", "Sofia", "Omar", "Chloe", "Ivan"]
_LAST = ["Doe", "Smith", "Haddad", "Tanaka", "Schmidt", "Rossi", "Garcia", "Khan", "Martin", "Petrov"]
_CITY = ["Berlin", "London", "Paris", "Osaka", "Lagos", "Lima", "Austin", "Pune", "Oslo", "Turin"]
_PANS = [p for pans in TEST_PANS.values() for p in pans]


def _row(rng: random.Random, i: int, card: bool) -> str:
    date = f"20{rng.randint(10, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    amount = f"{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}"
    row = f"{i},{rng.choice(_FIRST)} {rng.choice(_LAST)},{date},{amount},EUR,{rng.choice(_CITY)}"
    if card:
        pan = rng.choice(_PANS)
        sep = rng.choice(["", " ", "-"])
        pan = sep.join(pan[k : k + 4] for k in range(0, len(pan), 4))
        row += f",{pan}"
    return row + "\n"


def csv_buffer(mb: int, card_share: float, seed: int) -> bytes:
    """``mb`` MB of rows; a pool of 100k distinct rows repeated (the detectors keep no state across rows)."""
    rng = random.Random(seed)
    pool = "".join(_row(rng, i, rng.random() < card_share) for i in range(100_000)).encode()
    size = mb << 20
    return (pool * (size // len(pool) + 1))[:size]


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def speed(mb: int, rounds: int, seed: int) -> None:
    clean = csv_buffer(mb, 0.0, seed)
    cards = csv_buffer(mb, 0.01, seed)
    hs, fallback = det.prefilter(), det.RePrefilter()
    print(f"\n(b) speed over {mb} MB of CSV-like rows, best of {rounds} (prefilter in use: {hs.name})")
    print(f"{'what':44} {'clean MB/s':>11} {'1% cards MB/s':>14}")

    def walk(pf: det.Prefilter) -> Callable[[bytes], object]:
        """The prefilter alone, walked over the whole buffer from candidate to candidate."""

        def run(buf: bytes) -> int:
            n, pos = 0, 0
            while (end := pf.first_end(buf, pos, digits_only=True)) is not None:
                n, pos = n + 1, end + 24
            return n

        return run

    rows: list[tuple[str, Callable[[bytes], object]]] = [
        ("has_candidate (first candidate, then stop)", det.has_candidate),
        (f"prefilter walk, {hs.name}", walk(hs)),
        ("prefilter walk, re fallback", walk(fallback)),
        (f"find_pans ({hs.name})", det.find_pans),
        (f"find_card_data ({hs.name})", det.find_card_data),
    ]
    spans = det.find_card_data(cards)
    for name, fn in rows:
        a = best(functools.partial(fn, clean), rounds)
        b = best(functools.partial(fn, cards), rounds)
        print(f"{name:44} {mb / a:>11,.0f} {mb / b:>14,.0f}")
    saved = det._PREFILTER
    det._PREFILTER = fallback  # type: ignore[misc]
    try:
        for name, fn in rows[3:]:
            a = best(functools.partial(fn, clean), rounds)
            b = best(functools.partial(fn, cards), rounds)
            print(f"{name.replace(hs.name, 're fallback'):44} {mb / a:>11,.0f} {mb / b:>14,.0f}")
    finally:
        det._PREFILTER = saved  # type: ignore[misc]

    def mask_cards() -> bytes:
        return det.mask(cards, spans)

    m = best(mask_cards, rounds)
    print(f"{'mask (spans given)':44} {'':>11} {mb / m:>14,.0f}")
    print(f"card rows found: {sum(s.kind == 'pan' for s in spans):,} PAN spans in the 1% buffer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=200_000, help="values per kind for (a)")
    ap.add_argument("--mb", type=int, default=64, help="buffer size for (b)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    false_positives(args.n, args.seed)
    speed(args.mb, args.rounds, args.seed)


if __name__ == "__main__":
    main()
