# Import by the address of the coordinator (host:port; the port defaults to 5432).
# Credentials and TLS settings come from the provider block.
terraform import citus_cluster.example 10.0.0.10:5432
