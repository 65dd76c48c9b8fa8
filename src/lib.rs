//! shardform: Terraform providers for a highly available Citus stack.
//!
//! Layers, from the wire inwards:
//! - [`plugin`]: the plugin-protocol-5 edge (go-plugin handshake, TLS, gRPC
//!   server, logging) and the translation of wire messages to framework calls;
//! - [`cty`]: Terraform's value system and its msgpack / JSON codecs;
//! - [`framework`]: what a resource author sees (schema, diagnostics with
//!   paths, validators, plan rules, the resource trait);
//! - [`sql`]: PostgreSQL connections and safe SQL building, shared by providers;
//! - [`kubernetes`]: the Kubernetes API connection and request helpers, shared by providers;
//! - one module per provider: [`citus`], [`pgpool`], [`longhorn`].

pub mod citus;
pub mod cty;
pub mod framework;
pub mod kubernetes;
pub mod longhorn;
pub mod pgpool;
pub mod plugin;
pub mod sql;
