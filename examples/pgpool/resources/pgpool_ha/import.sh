# Import by the group's base_dir, an absolute path. The rest comes from the
# configuration the provider saved there at the last apply, the secrets from the group's own files.
terraform import pgpool_ha.coordinator /var/lib/shardform/coordinator
