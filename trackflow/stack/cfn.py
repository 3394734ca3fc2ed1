"""CloudFormation intrinsic functions as small Python helpers, so the template reads like the JSON it becomes."""

from __future__ import annotations

from typing import Any

NO_VALUE: dict[str, str] = {"Ref": "AWS::NoValue"}


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def sub(text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"Fn::Sub": [text, variables] if variables else text}


def get_att(resource: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, attribute]}


def if_(condition: str, then: Any, otherwise: Any = NO_VALUE) -> dict[str, list[Any]]:
    return {"Fn::If": [condition, then, otherwise]}


def equals(left: Any, right: Any) -> dict[str, list[Any]]:
    return {"Fn::Equals": [left, right]}


def not_(condition: dict[str, Any]) -> dict[str, list[Any]]:
    return {"Fn::Not": [condition]}


def and_(*conditions: Any) -> dict[str, list[Any]]:
    return {"Fn::And": list(conditions)}


def or_(*conditions: Any) -> dict[str, list[Any]]:
    return {"Fn::Or": list(conditions)}


def condition(name: str) -> dict[str, str]:
    return {"Condition": name}


def not_empty(parameter: str) -> dict[str, Any]:
    return not_(equals(ref(parameter), ""))


def list_item(parameter: str, index: int, *, room: int) -> dict[str, Any]:
    """Item ``index`` of a CommaDelimitedList parameter, or "" past its end (up to ``room`` items).

    CloudFormation cannot count a list, and ``Fn::Select`` past the end fails
    the stack; padding the joined list with commas makes every index exist.
    """
    padded = {"Fn::Join": ["", [{"Fn::Join": [",", ref(parameter)]}, "," * room]]}
    return {"Fn::Select": [index, {"Fn::Split": [",", padded]}]}
