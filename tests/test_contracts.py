"""deal contracts: pre-conditions refuse bad arguments as provstore errors; post-conditions
hold on generated inputs (deal.cases) and fail as InvariantError when the code breaks them."""

from __future__ import annotations

import io

import deal
import pytest
from hypothesis import strategies as st

from provstore import InvariantError, Store, UsageError, open_store, tracker
from provstore.core import digests, encoding, objects
from provstore.core.digests import from_hex, parse_ref
from provstore.core.encoding import encode
from provstore.core.objects import Product, seal, seal_unchecked


def text(**kwargs):
    """Text every store can keep: UTF-8 encodable (no lone surrogates), no NUL."""
    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), **kwargs)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
digest_bytes = st.binary(min_size=32, max_size=32)
products = st.builds(
    Product,
    name=text(min_size=1, max_size=20),
    version=st.none() | text(max_size=8),
    metadata=st.dictionaries(text(max_size=6), values, max_size=3),
    content=st.none() | digest_bytes,
    size=st.none() | st.integers(0, 2**63 - 1),
    path=st.none() | text(max_size=30),
    run=st.none() | digest_bytes,
    parents=st.lists(digest_bytes, max_size=3).map(lambda ps: tuple(sorted(set(ps)))),
)
hex_text = st.text(alphabet="0123456789abcdefABCDEF", min_size=6, max_size=64)


# -- post-conditions hold on generated inputs -------------------------------------------------


@deal.cases(encode, kwargs={"value": values}, count=200)
def test_encode_contract(case):
    case()


@deal.cases(seal, kwargs={"obj": products}, count=100)
def test_seal_contract(case):
    case()


@deal.cases(parse_ref, kwargs={"text": hex_text}, count=200)
def test_parse_ref_contract(case):
    case()


@deal.cases(from_hex, kwargs={"text": digest_bytes.map(bytes.hex)})
def test_from_hex_contract(case):
    case()


@pytest.mark.parametrize("obj", [Product("n", "1", {"a": (1, 2)}, None, None, "/p", None, ())])
def test_unchecked_twins_agree(obj):
    assert seal_unchecked(obj) == seal(obj)
    assert encoding.canonical(obj.body()) == encode(obj.body())


# -- broken code fails as InvariantError, not as deal's exception -----------------------------


def test_a_short_digest_breaks_seal(monkeypatch):
    real = digests.blake3.blake3

    class Short:
        def __init__(self, data):
            self.inner = real(data)

        def digest(self):
            return self.inner.digest(length=16)

    monkeypatch.setattr(digests.blake3, "blake3", Short)
    with pytest.raises(InvariantError, match="a digest of 16 bytes, not 32"):
        seal(Product("n", None, {}, None, None, None, None, ()))


def test_an_encoder_that_drops_a_key_breaks_encode(monkeypatch):
    real = encoding._canon
    monkeypatch.setattr(
        encoding, "_canon", lambda value, depth: {k: v for k, v in real(value, depth).items()
                                                  if k != "b"}
    )  # fmt: skip
    with pytest.raises(InvariantError, match="does not give the encoded value back"):
        encode({"a": 1, "b": 2})


def test_a_wrong_frame_breaks_seal(monkeypatch):
    monkeypatch.setattr(
        objects, "frame", lambda kind, version, body: b"%s 9 1\x00x" % kind.encode()
    )
    with pytest.raises(InvariantError, match="does not load back"):
        seal(Product("n", None, {}, None, None, None, None, ()))


# -- pre-conditions refuse bad arguments with a UsageError that says what to give ------------


def test_seal_refuses_a_field_of_the_wrong_type():
    with pytest.raises(UsageError, match="field 'version' of a product has the wrong type"):
        seal(Product("n", 5, {}, None, None, None, None, ()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "non-empty str name"),
        ({"name": 7}, "non-empty str name"),
        ({"name": "n", "version": 2}, "version must be a str or None, not int"),
        ({"name": "n", "metadata": [("a", 1)]}, "metadata must be a mapping"),
        ({"name": "n", "parents": "3fa9c1"}, r"a list of digests, not str \(wrap one"),
        ({"name": "n", "parents": [42]}, "each of parents must be a hex digest"),
        ({"name": "n", "parents": [b"short"]}, "32 raw bytes"),
        ({"name": "n", "path": 3}, "path must be a non-empty str or os.PathLike"),
    ],
)
def test_register_refuses_bad_arguments(sqlite_url, kwargs, message):
    with tracker(sqlite_url, git=False) as t:
        with pytest.raises(UsageError, match=message):
            t.register_data_product(**kwargs)
        good = t.register_data_product("fine")
    with open_store(sqlite_url) as store:
        found = store.find_products()
    assert [item.hex for item in found] == [good]  # the refused calls stored nothing


def test_tracker_and_open_store_refuse_bad_arguments(sqlite_url):
    with pytest.raises(UsageError, match="url must be a str or None, not int"):
        tracker(5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="url must not be empty"):
        open_store("")
    with tracker(sqlite_url, git=False) as t, pytest.raises(UsageError, match="path must be"):
        t.use(None)  # type: ignore[arg-type]


def test_store_refuses_bad_arguments(backend_url):
    with Store(backend_url) as store:
        with pytest.raises(UsageError, match="reference must be a hex digest"):
            store.get(5)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="kind must be one of"):
            store.get("3fa9c1", kind="table")
        with pytest.raises(UsageError, match="direction must be 'ancestors' or 'descendants'"):
            store.lineage("3fa9c1", "upwards")
        with pytest.raises(UsageError, match="depth must be a whole number"):
            store.lineage("3fa9c1", depth=-1)
        with pytest.raises(UsageError, match="limit must be a whole number"):
            store.find_products(name="x", limit=-5)
        with pytest.raises(UsageError, match="limit must be a whole number"):
            store.runs("10")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="put\\(\\) stores sealed objects"):
            store.put([Product("n", None, {}, None, None, None, None, ())])  # type: ignore[list-item]
        with pytest.raises(UsageError, match=r"refs must be a list of digests, not str"):
            store.export_bundle("3fa9c1", io.BytesIO())  # type: ignore[arg-type]
        assert sum(store.stats()["objects"].values()) == 0
