"""Source versions: numeric dot-by-dot order, never text order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rebuilder.domain.versions import newest, ordered, version_key

dotted = st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=5).map(
    lambda parts: ".".join(map(str, parts))
)


def test_real_skus_where_text_and_numeric_order_disagree() -> None:
    windows = ["20348.587.220303", "20348.2849.241106", "20348.2762.241009"]
    assert sorted(windows)[-1] == "20348.587.220303"  # what a text sort would pick
    assert newest(windows) == "20348.2849.241106"
    assert ordered(["8.10.2024070513", "8.9.2024021311"]) == ["8.9.2024021311", "8.10.2024070513"]
    assert newest(["1.0.9", "1.0.10"]) == "1.0.10"
    assert newest([]) is None


@given(dotted, dotted)
def test_order_agrees_with_numeric_comparison_of_every_part(a: str, b: str) -> None:
    numeric_a, numeric_b = [int(p) for p in a.split(".")], [int(p) for p in b.split(".")]
    if numeric_a != numeric_b:
        assert (version_key(a) < version_key(b)) == (numeric_a < numeric_b)


@given(
    st.text(alphabet="0123456789.x²", max_size=12),
    st.text(alphabet="0123456789.x²", max_size=12),
    st.text(alphabet="0123456789.x²", max_size=12),
)
def test_the_order_is_total_for_any_text(a: str, b: str, c: str) -> None:
    ka, kb, kc = version_key(a), version_key(b), version_key(c)
    assert (ka < kb) or (kb < ka) or (a == b)
    if ka <= kb <= kc:
        assert ka <= kc
