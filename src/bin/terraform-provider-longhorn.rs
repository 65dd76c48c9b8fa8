//! The `shardform/longhorn` provider executable, started by Terraform.

use shardform::plugin::grpc::ProviderService;

fn main() -> std::process::ExitCode {
    shardform::plugin::run(
        ProviderService::new(shardform::longhorn::provider()),
        shardform::longhorn::REGISTRY_ADDRESS,
    )
}
