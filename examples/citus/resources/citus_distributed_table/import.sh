# Import by the table's name, spelled as in the configuration's `table`.
# The connection settings come from the provider block.
terraform import citus_distributed_table.nodestore_node public.nodestore_node
