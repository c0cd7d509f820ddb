"""Switch a Kubernetes Service from the blue to the green Deployment by patching its selector.

Behind IG_KUBERNETES_SWITCH and the plan's ``kubernetes.enabled``: a blue/green data change that also swaps the
application version moves traffic in the same cutover step. The previous selector value is returned so a backout
can restore it. Not yet exercised against a real API server (that arrives with the Kubernetes delivery issue).
"""

from __future__ import annotations

import asyncio

from ig_migration.domain.plan import KubernetesSwitch


def _patch(switch: KubernetesSwitch, version: str) -> str:
    from kubernetes import client, config  # imported here: only plans that switch a Service need it

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.CoreV1Api()
    service = api.read_namespaced_service(switch.service, switch.namespace)
    selector = service.spec.selector if service.spec is not None else None
    previous = (selector or {}).get(switch.selector_key, "")
    api.patch_namespaced_service(switch.service, switch.namespace,
                                 {"spec": {"selector": {switch.selector_key: version}}})
    return str(previous)


async def switch_selector(switch: KubernetesSwitch, version: str) -> str:
    """Point the Service at Pods labelled ``selector_key=version``; returns the value it had before."""
    if not switch.enabled or not switch.service:
        raise ValueError("kubernetes switch is not enabled for this plan (kubernetes.enabled and .service)")
    return await asyncio.to_thread(_patch, switch, version)
