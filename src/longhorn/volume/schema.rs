//! The `longhorn_volume` schema. Every spec field Longhorn's webhook defaults
//! is optional+computed, so a plan settles on what Longhorn chose.

use crate::cty::{Type, Value};
use crate::framework::validators::{int_between, one_of, Validator};
use crate::framework::{timeouts, AttrPath, Attribute, Block, Diagnostics, NestedBlock, Schema};

use super::super::quantity::SizeValidator;
use super::fields::{Kind, SPEC_FIELDS};

pub const MAX_NAME: usize = 40;

pub fn schema() -> Schema {
    let mut block = Block::new(
        "A Longhorn volume (`longhorn.io/v1beta2` `Volume`), made by server-side apply of the \
         fields set here only, optionally with a PersistentVolume and PersistentVolumeClaim as \
         Longhorn's UI makes them.",
    )
    .attribute(
        Attribute::computed("id", Type::String)
            .use_state_for_unknown()
            .describe("`NAMESPACE/NAME` of the Volume."),
    )
    .attribute(
        Attribute::required("name", Type::String)
            .requires_replace()
            .validate(VolumeName)
            .describe(format!(
                "Name of the Volume: lowercase letters, digits, `-`, `_` and `.`, starting with a \
                 letter or digit, at most {MAX_NAME} characters. Changing it replaces the volume."
            )),
    )
    .attribute(
        Attribute::optional_computed("namespace", Type::String)
            .requires_replace()
            .describe("Namespace of the Volume; the provider's `namespace` when not set."),
    )
    .attribute(
        Attribute::required("size", Type::String)
            .validate(SizeValidator)
            .describe(
                "Size with a unit, such as `\"20Gi\"` or `\"512Mi\"` (binary Ki, Mi, Gi, Ti, Pi, Ei \
                 or decimal k, M, G, T, P, E), at least 10Mi. Longhorn rounds it up to a multiple of \
                 2 MiB; sizes are compared after that rounding. It can grow in place (through the \
                 bound PVC when there is one) but never shrink.",
            ),
    );
    for field in SPEC_FIELDS {
        let mut attribute =
            Attribute::optional_computed(field.attr, field.kind.cty()).describe(field.describe);
        if field.replace {
            attribute = attribute.requires_replace();
        }
        if !field.computed {
            attribute.presence = crate::framework::Presence::Optional;
        }
        attribute = match field.attr {
            "number_of_replicas" => attribute.validate(int_between(1, 20)),
            "stale_replica_timeout" => attribute.validate(int_between(1, 20160)),
            "data_locality" => {
                attribute.validate(one_of(&["disabled", "best-effort", "strict-local"]))
            }
            "access_mode" => attribute.validate(one_of(&["rwo", "rwop", "rwx"])),
            "frontend" => attribute.validate(one_of(&["blockdev", "iscsi", "nvmf", "ublk"])),
            "replica_auto_balance" => attribute.validate(one_of(&[
                "ignored",
                "disabled",
                "least-effort",
                "best-effort",
            ])),
            "data_engine" => attribute.validate(one_of(&["v1", "v2"])),
            "data_source" => attribute.validate(DataSource),
            _ => attribute,
        };
        block = block.attribute(attribute);
    }
    block = block
        .attribute(
            Attribute::optional("deletion_protection", Type::Bool)
                .default(Value::Bool(true))
                .describe(
                    "While `true` (the default), destroying or replacing the volume is refused, at \
                     plan time where Terraform plans destroys through the provider and at apply \
                     otherwise. Set it to `false` and apply before destroying.",
                ),
        )
        .attribute(
            Attribute::computed("size_bytes", Type::Number)
                .describe("The size Longhorn keeps (`spec.size`), in bytes."),
        )
        .attribute(
            Attribute::computed("actual_size", Type::Number)
                .describe("Bytes the volume's data takes on disk (`status.actualSize`)."),
        )
        .attribute(
            Attribute::computed("state", Type::String)
                .describe("`status.state`: creating, attached, detached, attaching, detaching or deleting."),
        )
        .attribute(
            Attribute::computed("robustness", Type::String)
                .describe("`status.robustness`: healthy, degraded, faulted or unknown."),
        )
        .attribute(
            Attribute::computed("kubernetes_status", kubernetes_status_type()).describe(
                "The Kubernetes binding Longhorn reports (`status.kubernetesStatus`): `pv_name`, \
                 `pv_status`, `pvc_name`, `pvc_namespace`.",
            ),
        )
        .attribute(
            Attribute::computed("applied_fields", Type::list(Type::String)).describe(
                "The volume attributes this resource sets by server-side apply (field manager \
                 `shardform-longhorn`): the ones the configuration sets. Others are Longhorn's \
                 defaults, read back but never sent.",
            ),
        )
        .block(NestedBlock::single(
            "kubernetes_pv",
            Block::new(
                "A PersistentVolume for the volume, made as Longhorn's UI makes it (CSI driver \
                 `driver.longhorn.io`, reclaim policy Retain). Changing it replaces the volume.",
            )
            .attribute(
                Attribute::optional_computed("name", Type::String)
                    .requires_replace()
                    .validate(crate::framework::validators::not_blank())
                    .describe("Name of the PersistentVolume; the volume's name when not set."),
            )
            .attribute(
                Attribute::optional("fs_type", Type::String)
                    .default(Value::string("ext4"))
                    .requires_replace()
                    .validate(one_of(&["ext4", "xfs"]))
                    .describe("File system: `ext4` (default) or `xfs`."),
            )
            .attribute(
                Attribute::optional("storage_class_name", Type::String)
                    .default(Value::string("longhorn-static"))
                    .requires_replace()
                    .describe(
                        "Storage class of the PV and PVC; `longhorn-static` (default) needs no \
                         StorageClass object.",
                    ),
            ),
        ))
        .block(NestedBlock::single(
            "kubernetes_pvc",
            Block::new(
                "A PersistentVolumeClaim bound to `kubernetes_pv` (which it needs). Once it is \
                 bound, growth goes through it, as Longhorn requires. Changing it replaces the volume.",
            )
            .attribute(
                Attribute::optional_computed("name", Type::String)
                    .requires_replace()
                    .validate(crate::framework::validators::not_blank())
                    .describe("Name of the PersistentVolumeClaim; the PV's name when not set."),
            )
            .attribute(
                Attribute::required("namespace", Type::String)
                    .requires_replace()
                    .validate(crate::framework::validators::not_blank())
                    .describe("Namespace of the PersistentVolumeClaim (where its workload runs)."),
            ),
        ))
        .block(timeouts::block(&["create", "update", "delete"]));
    Schema::new(0, block)
}

pub fn kubernetes_status_type() -> Type {
    Type::object([
        ("pv_name", Type::String),
        ("pv_status", Type::String),
        ("pvc_name", Type::String),
        ("pvc_namespace", Type::String),
    ])
}

impl Kind {
    pub fn cty(self) -> Type {
        match self {
            Kind::Int => Type::Number,
            Kind::Str => Type::String,
            Kind::Bool => Type::Bool,
            Kind::StrList => Type::list(Type::String),
        }
    }
}

/// Longhorn's name rule; longer names it would silently rewrite, so they are refused.
pub struct VolumeName;

pub fn name_error(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = name.len() >= 2
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if name.chars().count() > MAX_NAME {
        Some(format!(
            "{name:?} is {} characters long; Longhorn volume names are at most {MAX_NAME}.",
            name.chars().count()
        ))
    } else if !first_ok || !rest_ok {
        Some(format!(
            "{name:?} must match ^[a-z0-9][a-z0-9_.-]+$: at least 2 characters of lowercase \
             letters, digits, '-', '_' and '.', starting with a letter or digit."
        ))
    } else {
        None
    }
}

impl Validator for VolumeName {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        if let Some(problem) = value.as_str().and_then(name_error) {
            diags.error_at(
                path.clone(),
                "Invalid volume name",
                format!("{path}: {problem}"),
            );
        }
    }
}

/// `vol://NAME` or `snap://VOLUME/SNAPSHOT`.
pub struct DataSource;

impl Validator for DataSource {
    fn validate(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        let Some(text) = value.as_str() else { return };
        let ok = match (text.strip_prefix("vol://"), text.strip_prefix("snap://")) {
            (Some(volume), _) => name_error(volume).is_none(),
            (_, Some(rest)) => rest
                .split_once('/')
                .is_some_and(|(volume, snap)| name_error(volume).is_none() && !snap.is_empty()),
            _ => false,
        };
        if !ok {
            diags.error_at(
                path.clone(),
                "Invalid data source",
                format!(
                    "{path} must be \"vol://VOLUME\" or \"snap://VOLUME/SNAPSHOT\", got {text:?}."
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_longhorn() {
        assert!(name_error("citus-worker-0").is_none());
        assert!(name_error("a").is_some());
        assert!(name_error("Data").unwrap().contains("^[a-z0-9]"));
        assert!(name_error("-x").is_some());
        assert!(name_error(&"a".repeat(41)).unwrap().contains("at most 40"));
        assert!(name_error(&"a".repeat(40)).is_none());
    }

    #[test]
    fn data_sources() {
        for (text, ok) in [
            ("vol://src", true),
            ("snap://src/s1", true),
            ("snap://src", false),
            ("src", false),
        ] {
            let mut diags = Diagnostics::new();
            DataSource.validate(
                &Value::string(text),
                &AttrPath::root("data_source"),
                &mut diags,
            );
            assert_eq!(!diags.has_errors(), ok, "{text}");
        }
    }
}
