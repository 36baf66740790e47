"""The doctor's list of required actions (rebuilder/domain/permissions.py ROLES) against infra/, offline:
each role is the custom role of infra/modules/roles.bicep with the same actions, assigned to the same
identity at the same kind of place as infra/main.bicep assigns it, so the list and the deployment
cannot drift apart."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

from rebuilder.domain.permissions import ROLES, ROLES_BICEP, Holder, Where, app_roles, required_actions

ROOT = Path(__file__).resolve().parents[2]


@cache
def tree(relative: str) -> dict[str, Any]:
    return BicepParser().parse(file_path=ROOT / relative)  # type: ignore[no-any-return]


def bicep_roles() -> dict[str, dict[str, Any]]:
    """roleDefinitions resource name -> its roleName and actions."""
    found = {}
    for name, resource in tree(ROLES_BICEP)["resources"].items():
        if resource["type"] == "Microsoft.Authorization/roleDefinitions":
            properties = resource["config"]["properties"]
            [permission] = properties["permissions"]
            found[name] = {"roleName": properties["roleName"], "actions": permission["actions"]}
    return found


def assignments() -> dict[str, tuple[Holder, Where]]:
    """Role (by its roles.bicep name) -> to whom and where infra/ assigns it."""
    found: dict[str, tuple[Holder, Where]] = {}
    for module in tree("infra/main.bicep")["modules"].values():
        text = json.dumps(module)
        for key in bicep_roles():
            if f'"{key}Id"' not in text:
                continue
            holder = Holder.AIB if '"aibPrincipalId"' in text else Holder.APP
            assert holder is Holder.AIB or '"appPrincipalId"' in text, key
            if "templateResourceGroups" in text:
                where = Where.TEMPLATES
            elif "galleryResourceGroup" in text:
                where = Where.GALLERY
            else:
                assert module["detail"]["path"] == "modules/identity-assignment.bicep", key
                where = Where.IDENTITY  # the assignment's scope is the identity (test_bicep checks it)
            found[key] = (holder, where)
    marketplace = tree(ROLES_BICEP)["resources"]["marketplace"]["config"]["properties"]
    [key] = [k for k in bicep_roles() if f'"{k}"' in json.dumps(marketplace["roleDefinitionId"])]
    assert marketplace["principalId"] == "appPrincipalId"
    found[key] = (Holder.APP, Where.SUBSCRIPTION)  # roles.bicep's one subscription-scope assignment
    return found


def test_every_role_of_roles_bicep_is_listed_once_with_its_actions_in_order() -> None:
    infra = bicep_roles()
    assert [r.key for r in ROLES] == list(infra)
    for role in ROLES:
        assert infra[role.key]["roleName"] == "${prefix} " + role.name
        assert list(role.actions) == infra[role.key]["actions"], role.key


def test_each_role_is_held_where_infra_assigns_it() -> None:
    assert {r.key: (r.holder, r.where) for r in ROLES} == assignments()


def test_the_required_actions_are_the_union_of_the_roles_infra_gives_the_app() -> None:
    infra, assigned = bicep_roles(), assignments()
    union = {
        a for key, (holder, _) in assigned.items() if holder is Holder.APP for a in infra[key]["actions"]
    }
    assert set(required_actions()) == union
    every = {a for role in infra.values() for a in role["actions"]}
    aib_only = every - union  # what only the AIB identity needs: the doctor names it, cannot check it
    assert aib_only == {
        "Microsoft.Compute/images/read",
        "Microsoft.Compute/images/write",
        "Microsoft.Compute/images/delete",
    }


def test_the_role_named_for_each_action_is_the_one_that_grants_it_there() -> None:
    infra, assigned = bicep_roles(), assignments()
    for where in Where:
        for role in app_roles(where):
            for action in role.actions:
                granting = [
                    key
                    for key, (holder, at) in assigned.items()
                    if holder is Holder.APP and at is where and action in infra[key]["actions"]
                ]
                assert granting == [role.key], (where, action)
