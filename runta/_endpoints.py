"""Request builders and response parsers for each API call in docs/api.md.

Pure functions shared by the sync and async clients, so both send identical requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from runta import urls
from runta._http import ApiRequest
from runta.errors import InvalidHostError, UnexpectedResponseError
from runta.models import EgressPolicy, Page, RuntimeInfo, check_inspect_mode

T = TypeVar("T")

HostsArgument = Sequence[str] | str


def runtime_path(name: str) -> str:
    # Quoted so that a name with "/" or "?" reaches runtad as one path segment, where it
    # is rejected with invalid_name instead of addressing another route.
    return "/runtimes/" + quote(name, safe="")


def runtime_name(runtime: RuntimeInfo | str) -> str:
    return runtime.name if isinstance(runtime, RuntimeInfo) else runtime


def version_headers(if_version: int | None) -> dict[str, str] | None:
    if if_version is None:
        return None
    return {"If-Match": str(if_version)}


def host_list(hosts: HostsArgument) -> list[str]:
    """Return the hosts as a list, taking a single string as one host."""
    if isinstance(hosts, str):
        return [hosts]
    return list(hosts)


def normalize_hosts(hosts: Iterable[str], field_name: str) -> list[str]:
    """Turn each URL or host into a bare host name with runta.urls.normalize_host.

    Raises runta.errors.InvalidHostError with ``field`` set to ``FIELD[i]`` for the first
    entry that has no host name, before any request is sent. A dropped port emits
    runta.urls.PortIgnoredWarning.
    """
    normalized = []
    for index, host in enumerate(hosts):
        try:
            normalized.append(urls.normalize_host(host))
        except urls.InvalidHostError as exc:
            raise InvalidHostError(
                str(exc), field=f"{field_name}[{index}]", host=exc.host, reason=exc.reason
            ) from exc
    return normalized


def prepare_hosts(hosts: HostsArgument, field_name: str, normalize: bool) -> list[str]:
    entries = host_list(hosts)
    if normalize:
        return normalize_hosts(entries, field_name)
    return entries


def list_runtimes() -> ApiRequest:
    return ApiRequest("GET", "/runtimes")


def create_runtime(name: str, netns: str | None) -> ApiRequest:
    body: dict[str, Any] = {"name": name}
    if netns is not None:
        body["netns"] = netns
    return ApiRequest("POST", "/runtimes", body=body)


def get_runtime(name: str) -> ApiRequest:
    return ApiRequest("GET", runtime_path(name))


def delete_runtime(name: str) -> ApiRequest:
    return ApiRequest("DELETE", runtime_path(name))


def get_egress(name: str) -> ApiRequest:
    return ApiRequest("GET", runtime_path(name) + "/egress")


def put_egress(
    name: str, policy: EgressPolicy, *, force: bool, if_version: int | None, normalize: bool
) -> ApiRequest:
    body: dict[str, Any] = {
        "enabled": policy.enabled,
        "allowed_hosts": prepare_hosts(policy.allowed_hosts, "allowed_hosts", normalize),
    }
    if policy.inspect is not None:
        body["inspect"] = policy.inspect
    if force:
        body["force"] = True
    return ApiRequest(
        "PUT", runtime_path(name) + "/egress", body=body, headers=version_headers(if_version)
    )


def patch_egress(
    name: str,
    *,
    enabled: bool | None,
    allowed_hosts: HostsArgument | None,
    force: bool,
    if_version: int | None,
    normalize: bool,
    inspect: str | None = None,
) -> ApiRequest:
    body: dict[str, Any] = {}
    if enabled is not None:
        body["enabled"] = enabled
    if allowed_hosts is not None:
        body["allowed_hosts"] = prepare_hosts(allowed_hosts, "allowed_hosts", normalize)
    if inspect is not None:
        body["inspect"] = check_inspect_mode(inspect)
    if force:
        body["force"] = True
    return ApiRequest(
        "PATCH", runtime_path(name) + "/egress", body=body, headers=version_headers(if_version)
    )


def allow_hosts(
    name: str, hosts: HostsArgument, *, force: bool, if_version: int | None, normalize: bool
) -> ApiRequest:
    body: dict[str, Any] = {"hosts": prepare_hosts(hosts, "hosts", normalize)}
    if force:
        body["force"] = True
    return ApiRequest(
        "POST", runtime_path(name) + "/egress/allow", body=body, headers=version_headers(if_version)
    )


def remove_hosts(
    name: str, hosts: HostsArgument, *, if_version: int | None, normalize: bool
) -> ApiRequest:
    body = {"hosts": prepare_hosts(hosts, "hosts", normalize)}
    return ApiRequest(
        "POST",
        runtime_path(name) + "/egress/remove",
        body=body,
        headers=version_headers(if_version),
    )


def set_enforcement(name: str, enabled: bool, *, if_version: int | None) -> ApiRequest:
    action = "enable" if enabled else "disable"
    return ApiRequest(
        "POST", runtime_path(name) + "/egress/" + action, headers=version_headers(if_version)
    )


def page_params(
    limit: int | None, after: str | None, order: str | None, **filters: str | None
) -> dict[str, str | int]:
    params: dict[str, str | int] = {}
    for key, value in filters.items():
        if value is not None:
            params[key] = value
    if limit is not None:
        params["limit"] = limit
    if after is not None:
        params["after"] = after
    if order is not None:
        params["order"] = order
    return params


def list_events(
    name: str, *, limit: int | None, after: str | None, order: str | None
) -> ApiRequest:
    params = page_params(limit, after, order)
    return ApiRequest("GET", runtime_path(name) + "/egress/events", params=params)


def list_audits(
    *,
    runtime: RuntimeInfo | str | None,
    category: str | None,
    limit: int | None,
    after: str | None,
    order: str | None,
) -> ApiRequest:
    name = runtime_name(runtime) if runtime is not None else None
    params = page_params(limit, after, order, runtime=name, category=category)
    return ApiRequest("GET", "/audits", params=params)


def get_status() -> ApiRequest:
    return ApiRequest("GET", "/status")


def parse_items(data: Any, parse_item: Callable[[Mapping[str, Any]], T]) -> list[T]:
    """Parse the ``items`` of a list response, rejecting any other shape."""
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise UnexpectedResponseError(f"runtad returned a list response without items: {data!r}")
    return [parse_item(item) for item in data["items"]]


def parse_page(data: Any, parse_item: Callable[[Mapping[str, Any]], T]) -> Page[T]:
    items = parse_document(data, lambda document: parse_items(document, parse_item))
    cursor = data.get("next")
    return Page(items=tuple(items), next=str(cursor) if cursor is not None else None)


def parse_document(data: Any, parse: Callable[[Any], T]) -> T:
    """Parse a response document, turning a missing or mistyped field into one SDK error."""
    try:
        return parse(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UnexpectedResponseError(
            f"runtad returned a document this SDK cannot read ({type(exc).__name__}: {exc}): "
            f"{data!r:.300}"
        ) from exc
