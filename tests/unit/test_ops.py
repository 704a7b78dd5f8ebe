"""Store operations as data (backstore/ops.py)."""

from __future__ import annotations

from pyiscsi.backstore.ops import MODIFYING, StoreOp, StoreOpKind

from ..dataclass_init import assert_init_matches_fields


def test_store_op_init_sets_every_field_in_order_with_its_default() -> None:
    """StoreOp writes its own __init__ (compiled: the generated one stays interpreted)."""

    def work() -> None:
        pass

    values = (StoreOpKind.CALL, 4096, 8192, memoryview(bytearray(8)), work)
    assert_init_matches_fields(StoreOp, values, required=1)


def test_modifying_kinds() -> None:
    assert StoreOp(StoreOpKind.WRITE).modifying and not StoreOp(StoreOpKind.READ).modifying
    assert {kind for kind in StoreOpKind if StoreOp(kind).modifying} == MODIFYING
