//! Schemas as a resource author writes them: attributes with their validators
//! and plan modifiers attached, nested blocks, markdown descriptions.
//!
//! The same value feeds the wire (`GetSchema`), config validation, planning,
//! and the docs test, so the schema is the single source of truth.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cty::{Type, Value};

use super::validators::Validator;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Required,
    Optional,
    /// Optional, and the provider fills it in when the user does not.
    OptionalComputed,
    /// Only the provider sets it.
    Computed,
}

/// How a planned value is derived when the configuration leaves room.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanModifier {
    /// A change of this attribute on an existing object destroys and recreates it.
    RequiresReplace,
    /// A computed value that does not change once known: plan the prior value
    /// instead of unknown.
    UseStateForUnknown,
    /// Optional+computed attribute: this value when the configuration omits it.
    Default(Value),
}

#[derive(Clone)]
pub struct Attribute {
    pub name: &'static str,
    pub ty: Type,
    pub description: String,
    pub presence: Presence,
    pub sensitive: bool,
    /// Terraform 1.11+: the value reaches the provider in configuration only
    /// and is never stored in plan or state (see `framework::write_only`).
    pub write_only: bool,
    pub validators: Vec<Arc<dyn Validator>>,
    pub plan_modifiers: Vec<PlanModifier>,
}

impl Attribute {
    fn new(name: &'static str, ty: Type, presence: Presence) -> Self {
        Attribute {
            name,
            ty,
            description: String::new(),
            presence,
            sensitive: false,
            write_only: false,
            validators: Vec::new(),
            plan_modifiers: Vec::new(),
        }
    }

    pub fn required(name: &'static str, ty: Type) -> Self {
        Self::new(name, ty, Presence::Required)
    }

    pub fn optional(name: &'static str, ty: Type) -> Self {
        Self::new(name, ty, Presence::Optional)
    }

    pub fn optional_computed(name: &'static str, ty: Type) -> Self {
        Self::new(name, ty, Presence::OptionalComputed)
    }

    pub fn computed(name: &'static str, ty: Type) -> Self {
        Self::new(name, ty, Presence::Computed)
    }

    pub fn describe(mut self, markdown: impl Into<String>) -> Self {
        self.description = markdown.into();
        self
    }

    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// A write-only (and sensitive) optional attribute: Terraform 1.11+
    /// passes it at plan and apply and keeps it out of plan and state.
    pub fn write_only(mut self) -> Self {
        debug_assert!(
            self.presence == Presence::Optional,
            "{}: a write-only attribute is optional, never computed",
            self.name
        );
        self.write_only = true;
        self.sensitive = true;
        self
    }

    pub fn validate(mut self, validator: impl Validator + 'static) -> Self {
        self.validators.push(Arc::new(validator));
        self
    }

    pub fn requires_replace(mut self) -> Self {
        self.plan_modifiers.push(PlanModifier::RequiresReplace);
        self
    }

    pub fn use_state_for_unknown(mut self) -> Self {
        self.plan_modifiers.push(PlanModifier::UseStateForUnknown);
        self
    }

    /// A default for an optional attribute; makes it optional+computed so the
    /// planned default is allowed to differ from the (null) configuration.
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        debug_assert!(
            self.presence != Presence::Required,
            "{}: a required attribute has no default",
            self.name
        );
        self.presence = Presence::OptionalComputed;
        self.plan_modifiers
            .push(PlanModifier::Default(value.into()));
        self
    }

    pub fn is_computed(&self) -> bool {
        matches!(
            self.presence,
            Presence::Computed | Presence::OptionalComputed
        )
    }

    pub fn default_value(&self) -> Option<&Value> {
        self.plan_modifiers.iter().find_map(|m| match m {
            PlanModifier::Default(v) => Some(v),
            _ => None,
        })
    }

    pub fn has_modifier(&self, modifier: &PlanModifier) -> bool {
        self.plan_modifiers.contains(modifier)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nesting {
    /// At most one block; null when absent.
    Single,
    /// A list of blocks; an empty list when absent.
    List,
    /// Blocks with one label each (`worker "w1" { ... }`), keyed by it.
    Map,
}

#[derive(Clone)]
pub struct NestedBlock {
    pub name: &'static str,
    pub nesting: Nesting,
    pub block: Block,
    pub min_items: i64,
    pub max_items: i64,
    /// False for blocks that only steer how apply works (`timeouts`) or what
    /// a create does (`create_if_missing`): a change of them alone changes
    /// nothing live, so it leaves computed values known in the plan.
    pub affects_live: bool,
}

impl NestedBlock {
    /// Marks the block as one whose change alone changes nothing live.
    pub fn not_affecting_live(mut self) -> Self {
        self.affects_live = false;
        self
    }

    pub fn single(name: &'static str, block: Block) -> Self {
        NestedBlock {
            name,
            nesting: Nesting::Single,
            block,
            min_items: 0,
            max_items: 0,
            affects_live: true,
        }
    }

    pub fn list(name: &'static str, block: Block) -> Self {
        NestedBlock {
            name,
            nesting: Nesting::List,
            block,
            min_items: 0,
            max_items: 0,
            affects_live: true,
        }
    }

    pub fn map(name: &'static str, block: Block) -> Self {
        NestedBlock {
            name,
            nesting: Nesting::Map,
            block,
            min_items: 0,
            max_items: 0,
            affects_live: true,
        }
    }

    /// Makes a single block required.
    pub fn required(mut self) -> Self {
        self.min_items = 1;
        self.max_items = 1;
        self
    }

    /// The cty type of this block's value inside its parent object.
    pub fn value_type(&self) -> Type {
        let object = self.block.value_type();
        match self.nesting {
            Nesting::Single => object,
            Nesting::List => Type::list(object),
            Nesting::Map => Type::map(object),
        }
    }

    /// The value of an absent block: null for single, empty for collections.
    pub fn empty_value(&self) -> Value {
        match self.nesting {
            Nesting::Single => Value::Null,
            Nesting::List => Value::List(Vec::new()),
            Nesting::Map => Value::Map(BTreeMap::new()),
        }
    }
}

#[derive(Clone, Default)]
pub struct Block {
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
}

impl Block {
    pub fn new(description: impl Into<String>) -> Self {
        Block {
            description: description.into(),
            attributes: Vec::new(),
            blocks: Vec::new(),
        }
    }

    pub fn attribute(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    pub fn block(mut self, block: NestedBlock) -> Self {
        self.blocks.push(block);
        self
    }

    /// The object type Terraform uses for values of this block.
    pub fn value_type(&self) -> Type {
        let mut fields = BTreeMap::new();
        for a in &self.attributes {
            fields.insert(a.name.to_string(), a.ty.clone());
        }
        for b in &self.blocks {
            fields.insert(b.name.to_string(), b.value_type());
        }
        Type::Object(fields)
    }

    pub fn find_attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    pub fn find_block(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }
}

/// Names Terraform takes for itself inside a `resource` block: an attribute
/// or block of a provider's schema with one of these names never reaches the
/// provider (`connection` and `provisioner` go to provisioners).
pub const RESERVED_RESOURCE_NAMES: &[&str] = &[
    "connection",
    "count",
    "depends_on",
    "for_each",
    "lifecycle",
    "provider",
    "provisioner",
];

#[derive(Clone)]
pub struct Schema {
    /// Bumped when the stored state's shape changes; see `Resource::upgrade_state`.
    pub version: i64,
    pub block: Block,
}

impl Schema {
    pub fn new(version: i64, block: Block) -> Self {
        Schema { version, block }
    }

    pub fn value_type(&self) -> Type {
        self.block.value_type()
    }
}
