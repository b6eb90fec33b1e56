"""A skip for tests that hold int8 layers to the exact integer product: only CPUs with a u8 x s8
dot-product instruction (VNNI, AMX) give it (``backends.cpu_class.exact_int8_products``)."""

from __future__ import annotations

import pytest

from packed_bert.backends.cpu_class import exact_int8_products

needs_exact_int8 = pytest.mark.skipif(
    not exact_int8_products(),
    reason="no VNNI or AMX here: the int8 kernels pair u8 x s8 products in 16 bits (vpmaddubsw), "
    "which saturates, so an int8 layer is not the exact integer product",
)
