"""The API's edge, over the parsed HCL: Front Door Premium with a WAF in Prevention
mode in prod (managed OWASP and bot rules, a per-client rate-limit rule), the API's
ingress open to that gateway only (and the gateway's id enforced by the service), and
egress from the apps subnet limited to what the apps use, then denied. Each check is
also shown catching a broken copy."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.policy import policy

EDGE = Path("modules") / "edge" / "main.tf"
# Where the apps may connect: the data subnets and the platform's service tags.
ALLOWED_EGRESS = {
    "${var.postgres_subnet_prefix}",
    "${var.private_endpoints_subnet_prefix}",
    "${var.registry_storage_service_tag}",
    "${var.apps_subnet.prefix}",
    "AzureContainerRegistry",
    "MicrosoftContainerRegistry",
    "AzureFrontDoor.FirstParty",
    "AzureMonitor",
    "AzureActiveDirectory",
    "AzureResourceManager",  # the restore drill's Azure CLI (restore, show, delete)
    "LogicApps",  # the access notifications' Logic App trigger (ACCESS_NOTIFY_WEBHOOK)
}
OPEN = {"*", "Internet", "0.0.0.0/0", "Any"}


def _edge(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    parsed = policy.parse(root / EDGE)
    bodies = {
        kind: body
        for block in parsed.get("resource", [])
        for kind, named in block.items()
        for body in named.values()
    }
    local_values = {k: v for block in parsed.get("locals", []) for k, v in block.items()}
    return bodies, local_values


def _edge_module(root: Path) -> dict[str, Any]:
    for block in policy.parse(root / "app-infra" / "main.tf").get("module", []):
        if "edge" in block:
            body: dict[str, Any] = block["edge"]
            return body
    return {}


def _rules(nsg: dict[str, Any], local_values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every security rule, dynamic ones expanded over their local maps."""
    rules = list(nsg.get("security_rule", []))
    for block in nsg.get("dynamic", []):
        dynamic = block.get("security_rule")
        if not dynamic:
            continue
        (template,) = dynamic["content"]
        source = dynamic["for_each"].removeprefix("${local.").removesuffix("}")
        items = local_values.get(source)
        if isinstance(items, dict):
            for key, value in items.items():
                rule = {**template, "name": f"allow-{key}"}
                for field, text in template.items():
                    if isinstance(text, str) and text.startswith("${security_rule.value."):
                        rule[field] = value[text.removeprefix("${security_rule.value.")[:-1]]
                rules.append(rule)
        else:  # inbound sources: a conditional over literal maps; each value a source
            for value in re.findall(r'"([^"]+)"', str(items)):
                rules.append({**template, "source_address_prefix": value})
    return rules


def _security_rules(root: Path, direction: str) -> list[dict[str, Any]]:
    """The apps subnet's security rules of one direction, dynamic ones expanded."""
    bodies, local_values = _edge(root)
    rules = _rules(bodies.get("azurerm_network_security_group", {}), local_values)
    return [r for r in rules if r.get("direction") == direction]


def check_gateway(root: Path = policy.INFRA) -> list[str]:
    problems = []
    module = _edge_module(root)
    if module.get("gateway_enabled") != "${var.public_ingress}":
        problems.append("edge: the gateway must be enabled wherever the API is public")
    if policy.tfvars(root)["prod"].get("public_ingress") is not True:
        problems.append("edge: prod must be public, through the gateway")
    bodies, _ = _edge(root)
    profile = bodies.get("azurerm_cdn_frontdoor_profile", {})
    if profile.get("sku_name") != "Premium_AzureFrontDoor":
        problems.append("edge: Front Door must be Premium (managed WAF rules, bot protection)")
    waf = bodies.get("azurerm_cdn_frontdoor_firewall_policy", {})
    if waf.get("mode") != "Prevention" or waf.get("enabled") is not True:
        problems.append("edge: the WAF policy must be enabled in Prevention mode")
    managed = {(r.get("type"), r.get("action")) for r in waf.get("managed_rule", [])}
    for rule_set in ("Microsoft_DefaultRuleSet", "Microsoft_BotManagerRuleSet"):
        if (rule_set, "Block") not in managed:
            problems.append(f"edge: managed rule set {rule_set} must block")
    if not any(
        r.get("type") == "RateLimitRule" and r.get("action") == "Block" and r.get("enabled")
        for r in waf.get("custom_rule", [])
    ):
        problems.append("edge: a rate-limit custom rule must block abusive clients")
    security = bodies.get("azurerm_cdn_frontdoor_security_policy", {})
    firewall = security.get("security_policies", [{}])[0].get("firewall", [{}])[0]
    if "azurerm_cdn_frontdoor_firewall_policy.this" not in str(
        firewall.get("cdn_frontdoor_firewall_policy_id")
    ) or "/*" not in str(firewall.get("association")):
        problems.append("edge: the WAF policy must cover every path of the endpoint")
    return problems


def check_ingress_locked(root: Path = policy.INFRA) -> list[str]:
    problems = []
    inbound = _security_rules(root, "Inbound")
    allowed = [r for r in inbound if r.get("access") == "Allow"]
    if any(r.get("source_address_prefix") in OPEN for r in allowed):
        problems.append("edge: an inbound rule allows the internet")
    if not any("AzureFrontDoor.Backend" in str(r.get("source_address_prefix")) for r in allowed):
        problems.append("edge: inbound must allow the AzureFrontDoor.Backend service tag")
    if not any(
        r.get("access") == "Deny" and r.get("source_address_prefix") == "*" for r in inbound
    ):
        problems.append("edge: inbound must end in deny-all")
    if "association" not in str(policy.parse(root / EDGE)):
        problems.append("edge: the security group is not associated with the apps subnet")
    # The service tag is every Front Door's: the API must also require our profile's id.
    edge_outputs = (root / "modules" / "edge" / "outputs.tf").read_text()
    apps = (root / "modules" / "container_apps" / "main.tf").read_text()
    if "FRONT_DOOR_ID" not in edge_outputs or "resource_guid" not in edge_outputs:
        problems.append("edge: the API must be given the gateway's id (FRONT_DOOR_ID)")
    if "var.api_edge_env" not in apps or _edge_module(root) == {}:
        problems.append("edge: the API's environment must include the edge's settings")
    main = (root / "app-infra" / "main.tf").read_text()
    if "api_edge_env               = module.edge.api_env" not in main:
        problems.append("edge: app-infra must pass the edge's settings to the API")
    return problems


def check_egress_deny_by_default(root: Path = policy.INFRA) -> list[str]:
    problems = []
    outbound = _security_rules(root, "Outbound")
    for rule in outbound:
        if rule.get("access") == "Allow" and rule.get("destination_address_prefix") not in (
            ALLOWED_EGRESS
        ):
            problems.append(
                f"edge: outbound {rule.get('name')} to {rule.get('destination_address_prefix')}"
                " is not one of the apps' dependencies"
            )
    deny = [r for r in outbound if r.get("access") == "Deny"]
    if not any(
        r.get("destination_address_prefix") == "*" and r.get("priority") == 4096 for r in deny
    ):
        problems.append("edge: outbound must end in deny-all")
    return problems


CHECKS: list[Callable[[Path], list[str]]] = [
    check_gateway,
    check_ingress_locked,
    check_egress_deny_by_default,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_edge_invariant_holds(check: Callable[[Path], list[str]]) -> None:
    assert check(policy.INFRA) == []


@pytest.fixture
def infra_copy(tmp_path: Path) -> Path:
    target = tmp_path / "infrastructure"
    shutil.copytree(policy.INFRA, target)
    return target


INBOUND_DENY = '    direction                  = "Inbound"\n    access                     = "Deny"'
OUTBOUND_DENY = (
    '    name                       = "deny-all-outbound"\n    priority                   = 4096'
)
BREACHES = [
    ('"Prevention"', '"Detection"', check_gateway, "Prevention"),
    ('"Microsoft_BotManagerRuleSet"', '"None"', check_gateway, "BotManager"),
    ('"Microsoft_DefaultRuleSet"', '"None"', check_gateway, "DefaultRuleSet"),
    ('"RateLimitRule"', '"MatchRule"', check_gateway, "rate-limit"),
    ('"Premium_AzureFrontDoor"', '"Standard_AzureFrontDoor"', check_gateway, "Premium"),
    ('"AzureFrontDoor.Backend"', '"Internet"', check_ingress_locked, "allows the internet"),
    (INBOUND_DENY, INBOUND_DENY.replace("Deny", "Allow"), check_ingress_locked, "deny-all"),
    ('"AzureMonitor"', '"Internet"', check_egress_deny_by_default, "monitoring to Internet"),
    (
        OUTBOUND_DENY,
        OUTBOUND_DENY.replace("4096", "4000"),
        check_egress_deny_by_default,
        "deny-all",
    ),
]


@pytest.mark.parametrize("breach", BREACHES, ids=[b[3] for b in BREACHES])
def test_each_edge_breach_is_caught(
    infra_copy: Path, breach: tuple[str, str, Callable[[Path], list[str]], str]
) -> None:
    old, new, check, expected = breach
    path = infra_copy / EDGE
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    problems = check(infra_copy)
    assert any(expected in p for p in problems), problems


def test_a_gateway_not_following_public_ingress_is_caught(infra_copy: Path) -> None:
    path = infra_copy / "app-infra" / "main.tf"
    text = path.read_text()
    old = "gateway_enabled                 = var.public_ingress"
    assert old in text
    path.write_text(text.replace(old, "gateway_enabled                 = false"))
    assert any("gateway must be enabled" in p for p in check_gateway(infra_copy))


def test_the_api_not_told_the_gateway_id_is_caught(infra_copy: Path) -> None:
    path = infra_copy / "modules" / "container_apps" / "main.tf"
    text = path.read_text()
    assert "var.api_edge_env, " in text
    path.write_text(text.replace("var.api_edge_env, ", ""))
    assert any("edge's settings" in p for p in check_ingress_locked(infra_copy))
