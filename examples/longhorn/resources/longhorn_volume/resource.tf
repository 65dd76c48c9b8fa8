# The data volume of a Citus worker: two replicas, kept near its workload,
# with a PersistentVolume and a PersistentVolumeClaim as Longhorn's UI makes them.
resource "longhorn_volume" "worker_0" {
  name               = "citus-worker-0-data"
  size               = "20Gi"
  number_of_replicas = 2
  data_locality      = "best-effort"
  access_mode        = "rwo"

  kubernetes_pv {
    fs_type = "ext4"
  }

  kubernetes_pvc {
    name      = "data-citus-worker-0"
    namespace = "citus"
  }

  # Destroying or replacing the volume is refused while this is true (the default).
  deletion_protection = true

  timeouts {
    create = "10m"
    update = "30m"
  }
}
