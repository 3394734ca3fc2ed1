"""trackflow.stack: the merge template's intrinsic-function tricks, evaluated as CloudFormation would."""

from __future__ import annotations

from typing import Any

import pytest

from trackflow.stack import merge_template
from trackflow.stack.cfn import list_item
from trackflow.stack.exceptions import RULE_EXCEPTIONS
from trackflow.stack.kafka import self_managed_access
from trackflow.stack.parameters import CONDITIONS, MAX_SUBNETS


def evaluate(node: Any, parameters: dict[str, Any], conditions: dict[str, bool] | None = None) -> Any:
    """The few intrinsic functions the template uses, as CloudFormation resolves them (AWS::NoValue -> None)."""
    conditions = conditions if conditions is not None else {}
    if isinstance(node, list):
        items = [evaluate(item, parameters, conditions) for item in node]
        return [item for item in items if item is not None]
    if not isinstance(node, dict):
        return node
    if node == {"Ref": "AWS::NoValue"}:
        return None
    (name, argument), *rest = node.items()
    if rest:
        return {key: evaluate(value, parameters, conditions) for key, value in node.items()}
    if name == "Ref":
        return parameters[argument]
    if name == "Condition":
        return condition(argument, parameters, conditions)
    if name == "Fn::Join":
        return argument[0].join(evaluate(argument[1], parameters, conditions))
    if name == "Fn::Split":
        return evaluate(argument[1], parameters, conditions).split(argument[0])
    if name == "Fn::Select":
        return evaluate(argument[1], parameters, conditions)[argument[0]]
    if name == "Fn::Equals":
        return evaluate(argument[0], parameters, conditions) == evaluate(argument[1], parameters, conditions)
    if name == "Fn::Not":
        return not evaluate(argument[0], parameters, conditions)
    if name == "Fn::And":
        return all(evaluate(item, parameters, conditions) for item in argument)
    if name == "Fn::Or":
        return any(evaluate(item, parameters, conditions) for item in argument)
    if name == "Fn::If":
        chosen = argument[1] if condition(argument[0], parameters, conditions) else argument[2]
        return evaluate(chosen, parameters, conditions)
    return {name: evaluate(argument, parameters, conditions)}


def condition(name: str, parameters: dict[str, Any], cache: dict[str, bool]) -> bool:
    if name not in cache:
        cache[name] = bool(evaluate(CONDITIONS[name], parameters, cache))
    return cache[name]


def _parameters(**given: Any) -> dict[str, Any]:
    defaults = {name: p.get("Default", "") for name, p in merge_template()["Parameters"].items()}
    for name, p in merge_template()["Parameters"].items():
        if p["Type"] == "CommaDelimitedList":
            defaults[name] = [item for item in str(defaults[name]).split(",")] if defaults[name] else [""]
    return defaults | given


@pytest.mark.parametrize("subnets", [[""], ["subnet-a"], ["subnet-a", "subnet-b", "subnet-c"]])
def test_list_items_past_the_end_are_empty_instead_of_failing_the_stack(subnets: list[str]) -> None:
    values = [evaluate(list_item("SubnetIds", n, room=MAX_SUBNETS), {"SubnetIds": subnets}) for n in range(6)]
    assert values == [s for s in subnets if s] + [""] * (6 - len([s for s in subnets if s]))


def test_the_self_managed_mapping_gets_one_entry_per_subnet_and_group_and_the_named_sasl_type() -> None:
    params = _parameters(
        KafkaSaslSecretArn="arn:aws:secretsmanager:us-east-1:123456789012:secret:k",
        KafkaSaslMechanism="SCRAM-SHA-256",
        SubnetIds=["subnet-a", "subnet-b"],
        SecurityGroupIds=["sg-1"],
    )
    entries = evaluate(self_managed_access(), params)
    assert entries == [
        {"Type": "SASL_SCRAM_256_AUTH", "URI": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k"},
        {"Type": "VPC_SUBNET", "URI": "subnet:subnet-a"},
        {"Type": "VPC_SUBNET", "URI": "subnet:subnet-b"},
        {"Type": "VPC_SECURITY_GROUP", "URI": "security_group:sg-1"},
    ]
    plain = evaluate(self_managed_access(), params | {"KafkaSaslMechanism": "PLAIN"})
    assert plain[0]["Type"] == "BASIC_AUTH"
    assert evaluate(self_managed_access(), _parameters()) == []  # and the property itself is left out then


def test_the_mapping_access_property_is_left_out_when_nothing_needs_it() -> None:
    mapping = merge_template()["Resources"]["IngestSelfManagedKafkaMapping"]["Properties"]
    assert evaluate(mapping["SourceAccessConfigurations"], _parameters()) is None
    msk = merge_template()["Resources"]["IngestMskMapping"]["Properties"]
    iam = _parameters(KafkaSource="msk", KafkaSaslMechanism="OAUTHBEARER")
    assert evaluate(msk["SourceAccessConfigurations"], iam) is None  # IAM: the role, no entry


def test_retries_are_bounded_only_with_somewhere_to_put_what_fails() -> None:
    mapping = merge_template()["Resources"]["IngestSelfManagedKafkaMapping"]["Properties"]
    assert evaluate(mapping["MaximumRetryAttempts"], _parameters()) == 10
    assert evaluate(mapping["MaximumRetryAttempts"], _parameters(OnFailureDestination="")) == -1
    assert evaluate(mapping["DestinationConfig"], _parameters(OnFailureDestination="")) is None


def test_on_demand_pollers_leave_out_every_retry_control() -> None:
    mapping = merge_template()["Resources"]["IngestSelfManagedKafkaMapping"]["Properties"]
    on_demand = _parameters(EventPollerMode="on-demand")
    for name in (
        "MaximumRetryAttempts",
        "MaximumRecordAgeInSeconds",
        "BisectBatchOnFunctionError",
        "DestinationConfig",
        "ProvisionedPollerConfig",
    ):
        assert evaluate(mapping[name], on_demand) is None, name
    assert evaluate(mapping["ProvisionedPollerConfig"], _parameters()) == {"MinimumPollers": 1, "MaximumPollers": 10}


def test_every_exception_names_a_resource_of_the_template() -> None:
    resources = merge_template()["Resources"]
    assert set(RULE_EXCEPTIONS) <= set(resources)


def test_no_role_refers_to_a_function_which_refers_to_its_role() -> None:
    import json

    from trackflow.stack import iam
    from trackflow.stack.operations import FUNCTIONS

    for name, role in iam.roles().items():
        text = json.dumps(role)
        for function in FUNCTIONS:
            assert f'"Ref": "{function}"' not in text and "${" + function + "}" not in text, (name, function)
            assert f'["{function}", ' not in text, (name, function)  # no GetAtt of a function either
    logs = iam.roles()["IngestRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    assert logs["Resource"] == {"Fn::GetAtt": ["IngestLogGroup", "Arn"]}
