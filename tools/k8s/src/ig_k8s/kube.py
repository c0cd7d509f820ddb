"""Kubernetes API clients for a simulated cluster's kubeconfig (the official `kubernetes` Python client)."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config


def api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


def secret_exists(core: client.CoreV1Api, name: str, namespace: str) -> bool:
    """Whether the Secret is there; for keys made once and kept (a new one would orphan what the old one signed)."""
    from kubernetes.client.rest import ApiException

    try:
        core.read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        return False
    return True
