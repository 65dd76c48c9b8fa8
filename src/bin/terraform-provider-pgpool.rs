//! The `shardform/pgpool` provider executable, started by Terraform.

use shardform::plugin::grpc::ProviderService;

fn main() -> std::process::ExitCode {
    shardform::plugin::run(
        ProviderService::new(shardform::pgpool::provider()),
        shardform::pgpool::REGISTRY_ADDRESS,
    )
}
