//! The plugin-protocol-5 edge: everything Terraform's go-plugin client expects
//! of a provider process. Provider code never sees the generated wire types;
//! [`grpc`] translates them to framework calls.

pub mod capture;
pub mod client_cert;
pub mod grpc;
pub mod handshake;
pub mod logging;
pub mod serve;
pub mod tls;

/// Code generated from `proto/` by tonic-prost-build.
pub mod wire {
    pub mod tfplugin5 {
        tonic::include_proto!("tfplugin5");
    }
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
}

pub use serve::run;
