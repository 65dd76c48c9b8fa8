# Import by NAMESPACE/NAME, or by NAME in the provider's namespace.
terraform import longhorn_volume.worker_0 longhorn-system/citus-worker-0-data
