"""Schemathesis hooks of scripts/schemathesis (loaded through SCHEMATHESIS_HOOKS).

The OpenAPI document names the rules of its parameters JSON Schema cannot express as formats
(api/src/openapi.rs); this module gives schemathesis a strategy for each.

`gb11643`: a national ID of GB 11643-1999 (chaincode's `PersonId::parse`): a region
code (a county of a province, or a whole-province residence-permit region), a real birth date
from 1880 on, a 3-digit sequence and the ISO 7064 MOD 11-2 check character. This module gives
schemathesis a strategy that generates such IDs, mixed with the demo's own residents
(GOVCHAIN_DEMO_PERSONS, comma-separated) so requests also reach the records behind them.
"""

import calendar
import os

import schemathesis
from hypothesis import strategies as st

# chaincode/src/person.rs: WEIGHTS, CHECK, PROVINCES, RESIDENCE_PERMIT_REGIONS.
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CHECK = "10X98765432"
PROVINCES = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50,
    51, 52, 53, 54, 61, 62, 63, 64, 65, 71,
]
RESIDENCE_PERMIT_REGIONS = ["810000", "820000", "830000"]
# PersonId::parse: a birth year from 1880, and is_valid_date: at most 2199.
YEARS = (1880, 2199)


def check_char(first17: str) -> str:
    return CHECK[sum(int(d) * w for d, w in zip(first17, WEIGHTS)) % 11]


@st.composite
def _generated(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        region = draw(st.sampled_from(RESIDENCE_PERMIT_REGIONS))
    else:
        county = draw(st.integers(1, 9999))
        region = f"{draw(st.sampled_from(PROVINCES)):02d}{county:04d}"
    year = draw(st.integers(*YEARS))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, calendar.monthrange(year, month)[1]))
    seq = draw(st.integers(0, 999))
    first17 = f"{region}{year:04d}{month:02d}{day:02d}{seq:03d}"
    return first17 + check_char(first17)


_demo = [p for p in os.environ.get("GOVCHAIN_DEMO_PERSONS", "").split(",") if p]
_strategy = _generated()
if _demo:
    _strategy = st.one_of(st.sampled_from(_demo), _generated())

schemathesis.openapi.format("gb11643", _strategy)

# `search-text` (api/src/search.rs): 2-32 characters once white space is removed, holding two
# adjacent characters one of which is not ASCII, or four ASCII letters or digits in a row.
# Chinese text of the demo's addresses and names, digits of IDs and phones, spaces between.
_HAN = "福建省州市鼓楼区台江五一中路号栋室张王李刘陈杨黄赵吴周"
_fragment = st.one_of(
    st.text(alphabet=_HAN, min_size=2, max_size=32),
    st.text(alphabet="0123456789", min_size=4, max_size=32),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=4, max_size=32),
)
_spaces = st.text(alphabet=" ", max_size=2)
schemathesis.openapi.format(
    "search-text", st.tuples(_spaces, _fragment, _spaces).map(lambda t: "".join(t))
)

# Keyset paging (api/src/paging.rs): `after` is a cursor only the node issues (a MAC over the
# user and the query), `page` and `after` never come together, and a page skips at most
# MAX_OFFSET_ROWS rows, (page - 1) x page_size. A token of the server and rules across two
# parameters, which no schema can express: requests generated as valid that break them are
# not sent (those generated as invalid still are, and must be refused).
MAX_OFFSET_ROWS = 10_000
# The largest default page size of a paged read (the exports'), when page_size is absent.
MAX_DEFAULT_PAGE_SIZE = 10_000


def _int(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    mode = getattr(getattr(meta, "generation", None), "mode", None)
    if meta is None or getattr(mode, "value", mode) != "positive":
        return True
    query = case.query or {}
    if "after" in query:
        return False
    page, size = _int(query.get("page")), _int(query.get("page_size", MAX_DEFAULT_PAGE_SIZE))
    if page is not None and size is not None and (page - 1) * size > MAX_OFFSET_ROWS:
        return False
    return True
