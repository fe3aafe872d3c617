"""Realistic customer records with known truth, at scale: people with skewed name
frequencies, one to several records each, and the corruptions FEBRL makes (typos, OCR and
phonetic errors, missing values, swapped names, nicknames, date digit and day/month swaps,
moved addresses) plus the email and phone variants real CRMs hold.

    python bench/identity_generate.py                    # 1,000,000 records, timed
    python bench/identity_generate.py --records 20000 --show 10
    python bench/identity_generate.py --out records.parquet
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy
import pandas
from _identity_common import Dataset, pairs_within_groups
from unidecode import unidecode

DEFAULT_RECORDS = 1_000_000
DEFAULT_SEED = 20_260_316

#: Records per person, 1 to 8: most people once, a few many times (mean about 1.6, so a
#: million records come from about 625,000 people).
RECORDS_PER_PERSON = (0.66, 0.20, 0.075, 0.035, 0.016, 0.008, 0.004, 0.002)

#: Share of people with a Vietnamese name (diacritics, family name first in speech).
VIETNAMESE_SHARE = 0.08
#: Share of people living with someone else (same address and mostly the same surname).
HOUSEHOLD_SHARE = 0.12


def _words(text: str) -> list[str]:
    """A list written as words; an underscore joins a name of several words."""
    return [word.replace("_", " ") for word in text.split()]


FIELDS = {
    "given_name": "given_name",
    "surname": "surname",
    "date_of_birth": "date_of_birth",
    "email": "email",
    "phone": "phone",
    "street_number": "street_number",
    "address_1": "address",
    "suburb": "suburb",
    "postcode": "postcode",
    "state": "state",
}

# Lists run from most to least common; weights fall with rank (see _zipf).
FEMALE = _words("""
charlotte olivia amelia isla mia ava grace chloe sophie emily ruby zoe evie willow matilda
lily harper sienna ella ivy sarah jessica emma hannah georgia lucy madison jasmine chelsea
rebecca laura samantha lauren rachel nicole kate michelle amanda stephanie natalie melissa
jennifer elizabeth katherine catherine margaret patricia susan deborah karen helen julie
kylie tracey lisa angela heather christine joanne wendy donna sharon alison linda barbara
mary anne jane caroline victoria alexandra abigail isabella scarlett eleanor alice violet
holly phoebe bella jade tahlia imogen eliza freya maya leah annabelle claire danielle
kimberly kristy tegan brooke courtney shannon bianca monique vanessa renee belinda naomi
tamara leanne megan amy kelly erin zara aisha priya anjali mei ling yuki fatima layla
""")
MALE = _words("""
oliver noah jack william leo lucas thomas henry charlie james ethan liam hudson archie
mason alexander harrison isaac max samuel daniel benjamin joshua matthew ryan michael
andrew david christopher nathan luke jacob dylan lachlan riley cooper jayden tyler connor
robert john peter richard mark paul stephen anthony brian kevin jason craig darren scott
shane adam bradley timothy gregory wayne dean glenn troy grant nicholas patrick sean
edward george frederick arthur harry joseph edward oscar hugo felix sebastian xavier
zachary aiden blake jordan kai levi finn angus hamish callum fraser rory declan brendan
mitchell jarrod jake kane travis corey brett justin aaron luke owen harvey elijah
mohammed ahmed ali omar raj arjun wei jun hiroshi kenji
""")
SURNAMES = _words("""
smith jones williams brown wilson taylor johnson white martin anderson thompson nguyen
thomas walker harris lee ryan robinson kelly king davis wright evans roberts green hall
wood jackson clarke patel khan lewis james phillips mitchell turner hill scott moore
campbell young edwards allen stewart baker murphy cooper morris ward hughes collins bell
clark cook harrison kennedy morgan murray watson wilkinson marshall graham hunt mills
richardson wong chen li zhang wang liu singh sharma kaur gill walsh obrien oconnor
sullivan mccarthy byrne doyle quinn fraser reid ross hamilton gordon burns duncan
henderson robertson mackenzie macdonald mclean maclean ferguson russell fletcher
barnes chapman dixon ellis fox gibson grant hayes holmes hudson hunter jenkins knight
lawrence mason matthews palmer parker pearce perry porter price rogers shaw simpson
spencer stevens stone sutton tucker wallace warren webb wells west wheeler woods
young andrews armstrong bailey barker bennett black boyd bradley burke butler carter
cole cox crawford cunningham curtis dawson day dean dunn elliott ford foster gardner
gray griffiths hart harvey hawkins hopkins howard jordan kerr lane lloyd long lucas
marsh mcdonald miller newman nicholson owen payne pearson powell reynolds rose
sanders saunders schmidt muller schneider fischer weber becker rossi russo ferrari
esposito bianchi romano colombo ricci papadopoulos georgiou costa silva santos
ferreira pereira oliveira rodrigues martinez garcia lopez gonzalez hernandez perez
sanchez ramirez torres flores rivera kim park choi jung kang cho yoon jang lim tanaka
suzuki watanabe ito yamamoto nakamura kobayashi sato kato yoshida
""")
#: Rarer English-looking surnames, built so a million people have a long tail of surnames.
SURNAME_PREFIXES = _words("""
ash bar black brad brook cal carl chad clay cole dal dun el fair fen gar glen hal hart
hay hol kel ken lang lin mar mel mor nor pen rad red ros rut sal shel stan stock thorn
wal war wes whit win wood york bram kin hed
""")
SURNAME_SUFFIXES = _words("""
ley ford ton wood well by den field ham man son er worth stone more wick bridge land
cott ridge burn dale hurst lock mont rick sey win shaw croft
""")

VIETNAMESE_SURNAMES = _words("""
Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ
Võ Đặng Bùi Đỗ Hồ Ngô Dương Lý
""")
#: Shares of the family names above among Vietnamese people (Nguyễn alone is about 38%).
VIETNAMESE_SURNAME_SHARES = (38, 11, 9.5, 7, 5.1, 5, 4.5, 3.9, 3.9, 2.1, 2, 1.4, 1.3, 1.3, 1, 0.5)
VIETNAMESE_FEMALE = _words(
    "Hương Lan Linh Trang Mai Hà Ngọc Thảo Anh Hạnh Phương Thủy Nhung Hoa Yến Vy"
)
VIETNAMESE_MALE = _words(
    "Minh Hùng Dũng Tuấn Nam Hải Long Sơn Quang Thắng Đức Huy Phúc Khang Bảo Trung"
)
VIETNAMESE_MIDDLE_FEMALE = _words("Thị Thị Thị Kim Thanh Minh")
VIETNAMESE_MIDDLE_MALE = _words("Văn Văn Văn Minh Đức Quang Hoàng")

NICKNAMES = {
    "william": ("bill", "will", "billy"),
    "robert": ("bob", "rob", "bobby"),
    "richard": ("rick", "dick", "rich"),
    "elizabeth": ("liz", "beth", "lizzie"),
    "katherine": ("kate", "kathy", "katie"),
    "catherine": ("cathy", "cate", "kate"),
    "margaret": ("maggie", "meg", "peggy"),
    "jennifer": ("jen", "jenny"),
    "michael": ("mike", "mick"),
    "christopher": ("chris",),
    "matthew": ("matt",),
    "nicholas": ("nick",),
    "benjamin": ("ben",),
    "alexander": ("alex",),
    "alexandra": ("alex", "sandra"),
    "samuel": ("sam",),
    "samantha": ("sam",),
    "daniel": ("dan", "danny"),
    "joshua": ("josh",),
    "thomas": ("tom", "tommy"),
    "james": ("jim", "jimmy", "jamie"),
    "john": ("jack", "johnny"),
    "joseph": ("joe", "joey"),
    "anthony": ("tony",),
    "andrew": ("andy", "drew"),
    "jonathan": ("jon",),
    "timothy": ("tim",),
    "stephen": ("steve",),
    "gregory": ("greg",),
    "edward": ("ed", "ted", "eddie"),
    "frederick": ("fred", "freddie"),
    "patricia": ("pat", "trish"),
    "rebecca": ("bec", "becky"),
    "jessica": ("jess",),
    "victoria": ("vicky", "tori"),
    "susan": ("sue",),
    "deborah": ("deb", "debbie"),
    "christine": ("chris", "tina"),
    "isabella": ("bella", "izzy"),
    "abigail": ("abby",),
    "charlotte": ("charlie", "lottie"),
    "harrison": ("harry",),
    "zachary": ("zac",),
    "nathan": ("nate",),
    "kimberly": ("kim",),
    "stephanie": ("steph",),
    "natalie": ("nat",),
    "amanda": ("mandy",),
    "madison": ("maddie",),
}

STREETS = _words("""
wallaby george king queen elizabeth victoria albert william church high station main
park railway bridge mill hill river beach ocean bay harbour lake forest garden spring
oak pine wattle banksia acacia waratah grevillea bottlebrush gum ironbark kurrajong
jacaranda hakea melaleuca boronia correa lilly_pilly tea_tree kingfisher magpie kookaburra
rosella lorikeet currawong heron pelican emu wombat possum echidna platypus dingo koala
bent bourke burke wills flinders cook phillip macquarie hume hovell sturt oxley leichhardt
stuart eyre forrest mitchell kennedy lawson blaxland wentworth bass banks hunter collins
darling murray lachlan murrumbidgee hawkesbury nepean parramatta yarra torrens swan
derwent tamar brisbane fitzroy burdekin herbert mary logan albany bunbury geraldton
hopetoun jersey kensington mayfair oxford cambridge regent pitt castlereagh sussex kent
""")
STREET_TYPES = _words(
    "street road avenue place court crescent drive close parade circuit way lane grove"
)
#: Abbreviations clerks use; one spelling in a duplicate, the other in the original.
STREET_TYPE_SHORT = {
    "street": "st",
    "road": "rd",
    "avenue": "ave",
    "place": "pl",
    "court": "ct",
    "crescent": "cres",
    "drive": "dr",
    "close": "cl",
    "parade": "pde",
    "circuit": "cct",
    "lane": "ln",
    "grove": "gr",
}
SUBURBS = _words("""
richmond carlton fitzroy brunswick footscray glenelg norwood unley prospect fremantle
subiaco cottesloe scarborough joondalup southport surfers_paradise toowong indooroopilly
chermside carindale newtown marrickville parramatta blacktown penrith liverpool
bankstown hurstville chatswood manly bondi randwick coogee cronulla hornsby ryde epping
castle_hill baulkham_hills kellyville rouse_hill campbelltown camden wollongong
newcastle maitland cessnock gosford wyong tuggerah erina terrigal dubbo orange bathurst
wagga_wagga albury tamworth armidale lismore ballina byron_bay coffs_harbour port_macquarie
 taree forster geelong ballarat bendigo shepparton wodonga mildura warrnambool
traralgon frankston dandenong ringwood box_hill doncaster camberwell hawthorn kew
toorak prahran st_kilda elwood brighton sandringham cheltenham mentone mordialloc
werribee hoppers_crossing sunshine essendon coburg preston reservoir heidelberg
ivanhoe greensborough eltham cairns townsville mackay rockhampton gladstone bundaberg
hervey_bay maryborough gympie noosa caloundra maroochydore ipswich toowoomba logan
beenleigh redcliffe caboolture strathpine woodridge springwood launceston devonport
burnie hobart glenorchy kingston sandy_bay darwin palmerston alice_springs katherine
belconnen tuggeranong woden gungahlin kambah civic elizabeth salisbury modbury tea_tree_gully
 marion morphett_vale noarlunga mount_barker murray_bridge victor_harbor
whyalla port_augusta port_lincoln mount_gambier rockingham mandurah armadale midland
morley balga mirrabooka wanneroo clarkson ellenbrook kalgoorlie geraldton bunbury busselton
albany broome karratha port_hedland
""")
#: State, first and last postcode, and share of people.
STATES = (
    ("NSW", 2000, 2999, 0.32),
    ("VIC", 3000, 3999, 0.26),
    ("QLD", 4000, 4999, 0.20),
    ("WA", 6000, 6799, 0.10),
    ("SA", 5000, 5799, 0.07),
    ("TAS", 7000, 7799, 0.02),
    ("ACT", 2600, 2620, 0.02),
    ("NT", 800, 899, 0.01),
)
#: Localities are drawn once with this seed, so every size of data shares one map.
LOCALITY_SEED = 7
LOCALITIES = 600

EMAIL_DOMAINS = (
    ("gmail.com", 0.36),
    ("outlook.com", 0.11),
    ("hotmail.com", 0.11),
    ("yahoo.com.au", 0.08),
    ("icloud.com", 0.08),
    ("bigpond.com", 0.08),
    ("optusnet.com.au", 0.05),
    ("live.com.au", 0.05),
    ("yahoo.com", 0.04),
    ("protonmail.com", 0.02),
    ("tpg.com.au", 0.02),
)
MOBILE_SHARE = 0.75
LANDLINE_AREAS = ("2", "3", "7", "8")

KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
#: Letters a scanner confuses, both ways.
OCR_LETTERS = (("m", "rn"), ("d", "cl"), ("w", "vv"), ("h", "li"), ("l", "i"), ("e", "c"))
OCR_DIGITS = (("1", "7"), ("0", "8"), ("5", "6"), ("3", "8"), ("4", "9"), ("2", "7"))
#: Spellings that sound alike, both ways.
PHONETIC = (
    ("ph", "f"), ("ck", "k"), ("ie", "y"), ("ll", "l"), ("ou", "ow"), ("ei", "ie"),
    ("c", "k"), ("s", "z"), ("th", "t"), ("mc", "mac"), ("son", "sen"), ("ey", "y"),
    ("ae", "e"), ("tt", "t"), ("nn", "n"), ("ine", "ina"), ("ah", "a"), ("er", "a"),
)  # fmt: skip


def generate(n_records: int = DEFAULT_RECORDS, seed: int = DEFAULT_SEED) -> Dataset:
    """`n_records` customer records, their true pairs, and nothing that gives truth away."""
    return generate_labelled(n_records, seed)[0]


def generate_labelled(
    n_records: int = DEFAULT_RECORDS, seed: int = DEFAULT_SEED
) -> tuple[Dataset, numpy.ndarray]:
    """As `generate`, with the person behind each record (row order) for checking truth."""
    rng = numpy.random.default_rng(seed)
    counts = _records_per_person(rng, n_records)
    people = _people(rng, len(counts))
    person = numpy.repeat(numpy.arange(len(counts)), counts)
    first = numpy.r_[True, person[1:] != person[:-1]]
    columns = {name: values[person] for name, values in people.items()}

    _corrupt_duplicates(rng, columns, numpy.flatnonzero(~first))
    _blank_some(rng, columns)
    order = rng.permutation(n_records)
    # object columns: a missing value stays None (pandas would make a str column's NaN).
    records = pandas.DataFrame({name: columns[name][order] for name in FIELDS}, dtype=object)
    records.insert(0, "unique_id", numpy.arange(n_records, dtype=numpy.int64))
    left, right = pairs_within_groups(person[order])
    return Dataset("synthetic_1m", records, False, left, right, dict(FIELDS)), person[order]


# -- people ------------------------------------------------------------------------------


def _records_per_person(rng: numpy.random.Generator, n_records: int) -> numpy.ndarray:
    """A record count per person, summing to exactly `n_records`."""
    shares = numpy.asarray(RECORDS_PER_PERSON) / sum(RECORDS_PER_PERSON)
    mean = float(shares @ numpy.arange(1, len(shares) + 1))
    draws = 1 + rng.choice(len(shares), size=int(n_records / mean * 1.05) + 16, p=shares)
    total = numpy.cumsum(draws)
    people = int(numpy.searchsorted(total, n_records)) + 1
    counts = draws[:people].copy()
    counts[-1] -= total[people - 1] - n_records
    return counts


def _people(rng: numpy.random.Generator, n: int) -> dict[str, numpy.ndarray]:
    """One clean row per person: names, birth date, contact details and address."""
    female = rng.random(n) < 0.5
    given, surname = _names(rng, n, female)
    people = {"given_name": given, "surname": surname}
    people["date_of_birth"] = _dates_of_birth(rng, n)
    people["phone_digits"] = _phone_digits(rng, n)
    people.update(_addresses(rng, n))
    _form_households(rng, people)
    people["email"] = _emails(rng, given, people["surname"], people["date_of_birth"])
    people["phone"] = _render_phones(rng, people["phone_digits"])
    return people


def _names(
    rng: numpy.random.Generator, n: int, female: numpy.ndarray
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Given names and surnames as people write them."""
    given = numpy.where(female, _pick(rng, _title(FEMALE), n), _pick(rng, _title(MALE), n))
    tail = [p + s for p in SURNAME_PREFIXES for s in SURNAME_SUFFIXES]
    surname = _pick(rng, _title(SURNAMES + tail), n)

    viet = numpy.flatnonzero(rng.random(n) < VIETNAMESE_SHARE)
    viet_female = female[viet]
    middle = numpy.where(
        viet_female,
        _pick(rng, VIETNAMESE_MIDDLE_FEMALE, len(viet), skew=0.0),
        _pick(rng, VIETNAMESE_MIDDLE_MALE, len(viet), skew=0.0),
    )
    personal = numpy.where(
        viet_female,
        _pick(rng, VIETNAMESE_FEMALE, len(viet)),
        _pick(rng, VIETNAMESE_MALE, len(viet)),
    )
    given[viet] = [f"{m} {p}" for m, p in zip(middle, personal, strict=True)]
    shares = numpy.asarray(VIETNAMESE_SURNAME_SHARES) / sum(VIETNAMESE_SURNAME_SHARES)
    surname[viet] = numpy.asarray(VIETNAMESE_SURNAMES, dtype=object)[
        rng.choice(len(shares), size=len(viet), p=shares)
    ]
    return given, surname


def _dates_of_birth(rng: numpy.random.Generator, n: int) -> numpy.ndarray:
    """ISO dates for adults aged about 18 to 90."""
    start = numpy.datetime64("1935-01-01")
    span = (numpy.datetime64("2007-12-31") - start).astype(int)
    days = start + rng.integers(0, span, size=n)
    return days.astype(str).astype(object)


def _emails(
    rng: numpy.random.Generator,
    given: numpy.ndarray,
    surname: numpy.ndarray,
    born: numpy.ndarray,
) -> numpy.ndarray:
    """One address per person, in the shapes people choose, unique across people."""
    n = len(given)
    # A Vietnamese given name is "middle personal"; the address uses the personal name.
    given = _ascii([g.rsplit(" ", 1)[-1] for g in given])
    surname = _ascii(list(surname))
    shape = rng.choice(7, size=n, p=(0.3, 0.15, 0.12, 0.08, 0.15, 0.1, 0.1))
    number = rng.integers(1, 100, size=n)
    local = [
        _email_local(s, g, f, int(b[2:4]), k)
        for s, g, f, b, k in zip(shape, given, surname, born, number, strict=True)
    ]
    domains, weights = zip(*EMAIL_DOMAINS, strict=True)
    domain = _pick_weighted(rng, domains, weights, n)
    emails = numpy.asarray([f"{u}@{d}" for u, d in zip(local, domain, strict=True)], dtype=object)
    return _make_unique(rng, emails)


def _email_local(shape: int, given: str, surname: str, year: int, number: int) -> str:
    forms = (
        f"{given}.{surname}",
        f"{given}{surname}",
        f"{given[:1]}{surname}",
        f"{given}_{surname}",
        f"{given}.{surname}{number}",
        f"{surname}{given[:1]}{number}",
        f"{given}{year:02d}",
    )
    return forms[shape]


def _make_unique(rng: numpy.random.Generator, emails: numpy.ndarray) -> numpy.ndarray:
    """Two people never share an address: later holders get digits, as providers insist."""
    for _ in range(5):
        taken = pandas.Series(emails).duplicated().to_numpy()
        if not taken.any():
            break
        digits = rng.integers(1, 1000, size=int(taken.sum()))
        emails[taken] = [
            e.replace("@", f"{k}@", 1) for e, k in zip(emails[taken], digits, strict=True)
        ]
    return emails


def _phone_digits(rng: numpy.random.Generator, n: int) -> numpy.ndarray:
    """National numbers of ten digits: 04xx mobiles and 0[2378] landlines."""
    mobile = rng.random(n) < MOBILE_SHARE
    area = numpy.asarray(LANDLINE_AREAS, dtype=object)[rng.integers(0, 4, size=n)]
    prefix = numpy.where(mobile, "4", area)
    subscriber = rng.integers(0, 100_000_000, size=n)
    return numpy.asarray(
        [f"0{p}{s:08d}" for p, s in zip(prefix, subscriber, strict=True)], dtype=object
    )


def _addresses(rng: numpy.random.Generator, n: int) -> dict[str, numpy.ndarray]:
    """Street number, street, suburb, postcode and state that agree with each other."""
    suburbs, postcodes, states = _localities()
    locality = _zipf_indices(rng, len(suburbs), n, skew=0.8)
    streets = [f"{s} {t}" for s in _title(STREETS) for t in _title(STREET_TYPES)]
    return {
        "street_number": _street_numbers(rng, n),
        "address_1": _pick(rng, streets, n, skew=0.5),
        "suburb": suburbs[locality],
        "postcode": postcodes[locality],
        "state": states[locality],
    }


def _street_numbers(rng: numpy.random.Generator, n: int) -> numpy.ndarray:
    # Most houses have small numbers; a long road reaches the hundreds.
    numbers = numpy.minimum(rng.lognormal(2.7, 1.0, size=n).astype(int) + 1, 999)
    return numbers.astype(str).astype(object)


def _localities() -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """A fixed map of suburbs, each with one state and one postcode."""
    rng = numpy.random.default_rng(LOCALITY_SEED)
    names = _title(SUBURBS)
    suburb = numpy.asarray(names, dtype=object)[rng.integers(0, len(names), size=LOCALITIES)]
    state_index = rng.choice(len(STATES), size=LOCALITIES, p=[s[3] for s in STATES])
    low = numpy.asarray([STATES[i][1] for i in state_index])
    high = numpy.asarray([STATES[i][2] for i in state_index])
    postcode = low + (rng.random(LOCALITIES) * (high - low + 1)).astype(int)
    state = numpy.asarray([STATES[i][0] for i in state_index], dtype=object)
    return suburb, numpy.asarray([f"{p:04d}" for p in postcode], dtype=object), state


def _form_households(rng: numpy.random.Generator, people: dict[str, numpy.ndarray]) -> None:
    """Some people live with the person before them: same address, landline and mostly
    surname, but their own given name, birth date, email and mobile."""
    joins = numpy.flatnonzero(rng.random(len(people["surname"])) < HOUSEHOLD_SHARE)
    joins = joins[joins > 0]
    for field in ("street_number", "address_1", "suburb", "postcode", "state"):
        people[field][joins] = people[field][joins - 1]
    family = joins[rng.random(len(joins)) < 0.8]
    people["surname"][family] = people["surname"][family - 1]
    digits = people["phone_digits"]
    landline = joins[[not d.startswith("04") for d in digits[joins - 1]]]
    digits[landline] = digits[landline - 1]


def _render_phones(rng: numpy.random.Generator, digits: numpy.ndarray) -> numpy.ndarray:
    """Each record writes its number its own way: 0412 345 678, +61412345678, 0412-345-678."""
    style = rng.choice(6, size=len(digits), p=(0.4, 0.22, 0.14, 0.1, 0.09, 0.05))
    return numpy.asarray(
        [_phone_style(d, s) for d, s in zip(digits, style, strict=True)], dtype=object
    )


def _phone_style(digits: str, style: int) -> str:
    if not digits.startswith("0") or len(digits) != 10:
        return digits  # already corrupted: written as it is
    national = digits[1:]
    if digits.startswith("04"):
        spaced = f"{digits[:4]} {digits[4:7]} {digits[7:]}"
        plus = f"+61 {national[:3]} {national[3:6]} {national[6:]}"
        dashed = f"{digits[:4]}-{digits[4:7]}-{digits[7:]}"
    else:
        spaced = f"({digits[:2]}) {digits[2:6]} {digits[6:]}"
        plus = f"+61 {national[0]} {national[1:5]} {national[5:]}"
        dashed = f"{digits[:2]}-{digits[2:6]}-{digits[6:]}"
    return (spaced, digits, plus, f"+61{national}", dashed, f"61{national}")[style]


# -- corruption ------------------------------------------------------------------------


def _corrupt_duplicates(
    rng: numpy.random.Generator, columns: dict[str, numpy.ndarray], dup: numpy.ndarray
) -> None:
    """Corrupt the second and later records of each person, as FEBRL does, and as clerks,
    scanners, forms and moves do."""
    _corrupt_names(rng, columns, dup)
    _corrupt_dates(rng, columns, dup)
    _corrupt_emails(rng, columns, dup)
    _corrupt_phones(rng, columns, dup)
    _corrupt_addresses(rng, columns, dup)
    _change_case(rng, columns, dup)


def _corrupt_names(
    rng: numpy.random.Generator, columns: dict[str, numpy.ndarray], dup: numpy.ndarray
) -> None:
    given, surname = columns["given_name"], columns["surname"]
    _apply(rng, given, dup, 0.06, _nickname)
    _apply(rng, given, dup, 0.02, lambda s, u: s[:1])
    _apply(rng, given, dup, 0.08, _typo)
    _apply(rng, surname, dup, 0.08, _typo)
    _apply(rng, given, dup, 0.02, _ocr_letters)
    _apply(rng, surname, dup, 0.02, _ocr_letters)
    _apply(rng, given, dup, 0.04, _phonetic)
    _apply(rng, surname, dup, 0.04, _phonetic)
    # Vietnamese names lose their diacritics in half the systems that hold them.
    _apply(rng, given, dup, 0.5, lambda s, u: unidecode(s), only=_has_diacritics)
    _apply(rng, surname, dup, 0.5, lambda s, u: unidecode(s), only=_has_diacritics)

    swap = dup[rng.random(len(dup)) < 0.03]
    given[swap], surname[swap] = surname[swap], given[swap].copy()


def _corrupt_dates(
    rng: numpy.random.Generator, columns: dict[str, numpy.ndarray], dup: numpy.ndarray
) -> None:
    born = columns["date_of_birth"]
    _apply(rng, born, dup, 0.03, _swap_adjacent_digits)
    _apply(rng, born, dup, 0.03, _swap_day_month)
    _apply(rng, born, dup, 0.03, _replace_digit)


def _corrupt_emails(
    rng: numpy.random.Generator, columns: dict[str, numpy.ndarray], dup: numpy.ndarray
) -> None:
    email = columns["email"]
    moved = dup[rng.random(len(dup)) < 0.10]
    # A new address at another provider: the old one tells nothing. The number keeps it
    # from landing on another person's mailbox.
    names = (columns["given_name"][moved], columns["surname"][moved])
    fresh = _emails(rng, *names, columns["date_of_birth"][moved])
    number = rng.integers(100, 1000, size=len(moved))
    email[moved] = [e.replace("@", f"{k}@", 1) for e, k in zip(fresh, number, strict=True)]
    _apply(rng, email, dup, 0.05, _email_variant)
    _apply(rng, email, dup, 0.04, _typo_before_at)


def _corrupt_phones(
    rng: numpy.random.Generator, columns: dict[str, numpy.ndarray], dup: numpy.ndarray
) -> None:
    digits = columns["phone_digits"]
    changed = dup[rng.random(len(dup)) < 0.07]
    digits[changed] = _phone_digits(rng, len(changed))
    _apply(rng, digits, dup, 0.03, _replace_digit)
    _apply(rng, digits, dup, 0.02, _swap_adjacent_digits)
    # Every duplicate writes its number afresh; most pick another layout than the original.
    columns["phone"][dup] = _render_phones(rng, digits[dup])


def _corrupt_addresses(
    rng: numpy.random.Generator, columns: dict[str, numpy.ndarray], dup: numpy.ndarray
) -> None:
    moved = dup[rng.random(len(dup)) < 0.12]
    fresh = _addresses(rng, len(moved))
    for field, values in fresh.items():
        columns[field][moved] = values
    _apply(rng, columns["street_number"], dup, 0.03, _replace_digit)
    _apply(rng, columns["address_1"], dup, 0.10, _abbreviate_street_type)
    _apply(rng, columns["address_1"], dup, 0.05, _typo)
    _apply(rng, columns["suburb"], dup, 0.04, _typo)
    _apply(rng, columns["postcode"], dup, 0.02, _ocr_digits)
    _apply(rng, columns["postcode"], dup, 0.02, _swap_adjacent_digits)


def _change_case(
    rng: numpy.random.Generator, columns: dict[str, numpy.ndarray], dup: numpy.ndarray
) -> None:
    """Some systems shout, some whisper: a duplicate in capitals or in lower case."""
    upper = dup[rng.random(len(dup)) < 0.04]
    lower = dup[rng.random(len(dup)) < 0.10]
    for field in ("given_name", "surname", "address_1", "suburb"):
        values = columns[field]
        values[upper] = [v.upper() for v in values[upper]]
        values[lower] = [v.lower() for v in values[lower]]


#: Missing shares per field, for every record: forms leave fields out.
MISSING = {
    "given_name": 0.02,
    "surname": 0.01,
    "date_of_birth": 0.05,
    "email": 0.15,
    "phone": 0.15,
    "street_number": 0.04,
    "address_1": 0.02,
    "suburb": 0.02,
    "postcode": 0.02,
    "state": 0.05,
}


def _blank_some(rng: numpy.random.Generator, columns: dict[str, numpy.ndarray]) -> None:
    n = len(columns["surname"])
    for field, share in MISSING.items():
        columns[field][rng.random(n) < share] = None


# -- one value at a time ---------------------------------------------------------------

#: An edit gets a value and a uniform random number in [0, 1) and returns the new value.
Edit = Callable[[str, float], str]


def _apply(
    rng: numpy.random.Generator,
    values: numpy.ndarray,
    candidates: numpy.ndarray,
    share: float,
    edit: Edit,
    only: Callable[[str], bool] | None = None,
) -> None:
    """Apply `edit` in place to about `share` of `values[candidates]`."""
    chosen = candidates[rng.random(len(candidates)) < share]
    if only is not None:
        chosen = chosen[[only(v) for v in values[chosen]]]
    draws = rng.random(len(chosen))
    values[chosen] = [edit(v, u) for v, u in zip(values[chosen], draws, strict=True)]


def _typo(value: str, u: float) -> str:
    """One keyboard slip: a letter inserted, deleted, replaced by a neighbour, or two
    letters transposed; `u` chooses both the kind and the place."""
    if len(value) < 2:
        return value
    kind, where = divmod(u * 4, 1.0)
    i = int(where * len(value))
    if kind == 0:
        return value[:i] + _neighbour(value[i]) + value[i:]
    if kind == 1:
        return value[:i] + value[i + 1 :]
    if kind == 2:
        return value[:i] + _neighbour(value[i]) + value[i + 1 :]
    i = min(i, len(value) - 2)
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def _neighbour(char: str) -> str:
    """A key next to `char`, or `char` itself when it is not a letter on the keyboard."""
    lower = char.lower()
    for row in KEYBOARD_ROWS:
        at = row.find(lower)
        if at >= 0:
            return row[at + 1] if at + 1 < len(row) else row[at - 1]
    return char


def _ocr_letters(value: str, u: float) -> str:
    return _swap_pattern(value, u, OCR_LETTERS)


def _ocr_digits(value: str, u: float) -> str:
    return _swap_pattern(value, u, OCR_DIGITS)


def _phonetic(value: str, u: float) -> str:
    return _swap_pattern(value, u, PHONETIC)


def _swap_pattern(value: str, u: float, pairs: Sequence[tuple[str, str]]) -> str:
    """Replace one spelling found in `value` by its twin; unchanged when none is found."""
    lower = value.lower()
    found = [(a, b) for a, b in pairs if a in lower] + [(b, a) for a, b in pairs if b in lower]
    if not found:
        return value
    old, new = found[int(u * len(found))]
    at = lower.find(old)
    return value[:at] + new + value[at + len(old) :]


def _nickname(value: str, u: float) -> str:
    names = NICKNAMES.get(value.lower())
    return names[int(u * len(names))].title() if names else value


def _has_diacritics(value: str) -> bool:
    return not value.isascii()


def _swap_adjacent_digits(value: str, u: float) -> str:
    """Two neighbouring digits change places (1984 -> 1948)."""
    places = [i for i in range(len(value) - 1) if value[i].isdigit() and value[i + 1].isdigit()]
    if not places:
        return value
    i = places[int(u * len(places))]
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def _replace_digit(value: str, u: float) -> str:
    places = [i for i, c in enumerate(value) if c.isdigit()]
    if not places:
        return value
    kind, where = divmod(u * 9, 1.0)
    i = places[int(where * len(places))]
    digit = str((int(value[i]) + 1 + int(kind)) % 10)
    return value[:i] + digit + value[i + 1 :]


def _swap_day_month(value: str, u: float) -> str:
    """1984-07-02 -> 1984-02-07, only where the day could be a month."""
    year, month, day = value.split("-")
    return f"{year}-{day}-{month}" if int(day) <= 12 and day != month else value


def _email_variant(value: str, u: float) -> str:
    """The same mailbox written another way: capitals, a tag, or Gmail's ignored dots."""
    local, domain = value.split("@", 1)
    if u < 0.4:
        return f"{local.title()}@{domain.title()}"
    if u < 0.7:
        return f"{local}+{('shop', 'news', 'promo')[int(u * 10) % 3]}@{domain}"
    if domain == "gmail.com" and "." in local:
        return f"{local.replace('.', '')}@{domain}"
    return value.upper()


def _typo_before_at(value: str, u: float) -> str:
    local, domain = value.split("@", 1)
    return f"{_typo(local, u)}@{domain}"


def _abbreviate_street_type(value: str, u: float) -> str:
    street, _, kind = value.rpartition(" ")
    short = STREET_TYPE_SHORT.get(kind.lower())
    return f"{street} {short.title() if u < 0.5 else short}" if short else value


# -- lists -----------------------------------------------------------------------------


def _pick(
    rng: numpy.random.Generator, values: Sequence[str], n: int, skew: float = 1.0
) -> numpy.ndarray:
    """`n` draws from `values`, the first far more often than the last."""
    return numpy.asarray(values, dtype=object)[_zipf_indices(rng, len(values), n, skew)]


def _zipf_indices(rng: numpy.random.Generator, size: int, n: int, skew: float) -> numpy.ndarray:
    # Weight 1 / (rank + 20) ** skew: a flattened Zipf, so the most common name is about 2%
    # of people rather than the 10% a pure Zipf over a short list would give.
    weights = 1.0 / (numpy.arange(size) + 20.0) ** skew
    return rng.choice(size, size=n, p=weights / weights.sum())


def _pick_weighted(
    rng: numpy.random.Generator, values: Sequence[str], weights: Sequence[float], n: int
) -> numpy.ndarray:
    shares = numpy.asarray(weights) / sum(weights)
    return numpy.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=shares)]


def _title(words: Sequence[str]) -> list[str]:
    return [w.title() for w in words]


def _ascii(values: Sequence[str]) -> numpy.ndarray:
    """Lower-case ASCII for building emails ("Hương" -> "huong"); each distinct name once."""
    folded = {v: unidecode(v).lower().replace(" ", "").replace("'", "") for v in set(values)}
    return numpy.asarray([folded[v] for v in values], dtype=object)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--show", type=int, default=0, help="print this many records")
    parser.add_argument("--out", type=Path, help="write records to .parquet or .csv")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    dataset = generate(args.records, args.seed)
    seconds = time.perf_counter() - started
    print(
        f"{len(dataset.records):,} records, {len(dataset.truth_left):,} true pairs "
        f"in {seconds:.1f} s"
    )
    if args.show:
        print(dataset.records.head(args.show).to_string(index=False))
    if args.out:
        writer = dataset.records.to_parquet if args.out.suffix == ".parquet" else None
        (writer or dataset.records.to_csv)(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
