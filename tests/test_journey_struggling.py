"""A journey that starts when a visitor struggles with a form (two errors on one field within a
minute), decided in the processing transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from opencdp.journeys.definition import StrugglingEntry, parse_definition
from opencdp.profiles.reader import find_profile_id
from opencdp.store.schema import journey_history, journey_instances
from tests.identity_helpers import RULES
from tests.test_journeys import World, world  # noqa: F401  (the fixture)

WAIT = [{"id": "wait", "wait": {"minutes": 5}}]


def error(user: str, form: str = "signup", field: str = "password") -> dict[str, Any]:
    props = {"form_id": form, "field": field, "message": "Too short"}
    return {"type": "track", "userId": user, "event": "Form Field Errored", "properties": props}


def entered(in_world: World, journey_id: int) -> dict[str, dict[str, Any]]:
    with in_world.engine.connect() as conn:
        rows = conn.execute(
            sa.select(journey_instances.c.profile_id, journey_history.c.detail)
            .join(journey_history, journey_history.c.instance_id == journey_instances.c.id)
            .where(journey_instances.c.journey_id == journey_id, journey_history.c.action == "entered")
        ).all()
    return {r.profile_id: r.detail for r in rows}


def test_struggling_entry_is_parsed() -> None:
    definition = parse_definition({"entry": {"struggling": {"form_id": "signup"}}, "steps": WAIT})
    assert isinstance(definition.entry, StrugglingEntry)
    assert definition.entry.struggling.form_id == "signup"
    anywhere = parse_definition({"entry": {"struggling": {}}, "steps": WAIT})
    assert isinstance(anywhere.entry, StrugglingEntry) and anywhere.entry.struggling.form_id is None


def test_struggling_with_a_form_enters_the_journey(world: World) -> None:  # noqa: F811
    signup = world.journey(
        "help with sign-up", {"entry": {"struggling": {"form_id": "signup"}}, "steps": WAIT}
    )
    any_form = world.journey("help with any form", {"entry": {"struggling": {}}, "steps": WAIT})
    world.log(error("ann"), error("bob"), error("cid", form="newsletter"), error("dan"))
    world.clock.advance(seconds=10)
    world.log(error("ann"), error("cid", form="newsletter"))  # ann and cid: 2 errors in 10 s
    world.clock.advance(seconds=120)
    world.log(error("bob"))  # bob: 2 errors, but 2 minutes apart
    world.log(error("dan", field="email"))  # dan: one error on each of two fields
    world.run()

    def pid(user: str) -> str:
        found = find_profile_id(world.engine, RULES, "user_id", user)
        assert found is not None
        return found

    assert entered(world, signup) == {pid("ann"): {"struggling": "signup"}}
    assert entered(world, any_form) == {
        pid("ann"): {"struggling": "signup"},
        pid("cid"): {"struggling": "newsletter"},
    }
    # a third error: ann is struggling still, but never in the journey twice at once
    world.log(error("ann"))
    world.run()
    assert len(entered(world, signup)) == 1
