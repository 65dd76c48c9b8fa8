//! The `shardform/citus` provider executable, started by Terraform.

use shardform::plugin::grpc::ProviderService;

fn main() -> std::process::ExitCode {
    shardform::plugin::run(
        ProviderService::new(shardform::citus::provider()),
        shardform::citus::REGISTRY_ADDRESS,
    )
}
