"""signaction.results.Recorder: one outcome per work item (a second is ignored, the first kept),
and details without a slot placed in plan order (image index x keys + key index)."""

from __future__ import annotations

import logging

from signaction.artifacts import Artifacts
from signaction.plan import Image, Plan, SigningKey, WorkItem
from signaction.reference import parse_reference
from signaction.results import FAILED, SKIPPED, Recorder
from signaction.signing import Outcome
from signers.lookaside import LookasideFormat


def plan_of(images: int, keys: int) -> Plan:
    return Plan(tuple(Image(parse_reference(f"r.io/ns/app{n}:v1")[0], f"sha256:{n:064x}",
                            f"entry {n}") for n in range(images)),
                tuple(SigningKey(f"k{n}", f"k{n}") for n in range(keys)), 0)


def test_a_second_outcome_for_an_item_is_ignored_and_the_first_kept(tmp_path, caplog):
    plan = plan_of(2, 1)
    recorder = Recorder(Artifacts(tmp_path / "out"), plan, LookasideFormat())
    first, second = plan.items()
    recorder.report(Outcome(first, error="refused"))
    with caplog.at_level(logging.WARNING):
        recorder.report(Outcome(first, signature=b"sig"))
    assert "ignored a second outcome" in caplog.text
    entries = recorder.entries("not reported")
    assert [e.status for e in entries] == [FAILED, FAILED]
    assert entries[0].error == "refused" and entries[1].error == "not reported"
    recorder.report(Outcome(second, skipped="signed already"))
    assert [e.status for e in recorder.entries("x")] == [FAILED, SKIPPED]


def test_details_without_a_slot_take_the_items_place_in_plan_order(tmp_path):
    plan = plan_of(3, 2)
    recorder = Recorder(Artifacts(tmp_path / "out"), plan, LookasideFormat())
    items = list(plan.items())
    for n in (4, 1, 5):  # in any order, with equal but not identical items
        item = items[n]
        recorder.report(Outcome(WorkItem(item.image, item.key), error="e", detail={"n": n}))
    assert list(recorder.details(6)) == ['""', '{"n": 1}', '""', '""', '{"n": 4}', '{"n": 5}']
