//! What every provider that talks to the Kubernetes API shares
//! (`shardform/longhorn`, and `pgpool_ha`'s kubernetes target of
//! `shardform/pgpool`):
//!
//! - [`connection`]: the provider-block attributes (kubeconfig file and
//!   context, host and credentials, in-cluster) and the lazily made client;
//! - [`api`]: the one retry rule for idempotent requests, API errors turned
//!   into text a user can act on, and server-side apply under one field
//!   manager per provider;
//! - [`exec`]: commands run in a pod through the API server (`pods/exec`),
//!   the only way a provider reaches processes in the cluster;
//! - [`names`]: the API server's rules for names, labels and image
//!   references, as plan-time validators;
//! - [`quantity`]: sizes as Kubernetes quantities.
//!
//! Nothing here knows a provider's own objects (Longhorn's CRD, a group's
//! StatefulSet): each provider names what it needs served and its manager.

pub mod api;
pub mod connection;
pub mod exec;
pub mod names;
pub mod quantity;
