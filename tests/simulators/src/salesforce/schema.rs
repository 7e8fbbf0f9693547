//! The objects and fields the simulator knows: Case, Contact, CaseComment and (read-only) User,
//! with the org's external id fields and picklists taken from the [`Config`].

use super::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Object {
    Case,
    Contact,
    CaseComment,
    User,
}

impl Object {
    pub(crate) const ALL: [Object; 4] = [
        Object::Case,
        Object::Contact,
        Object::CaseComment,
        Object::User,
    ];

    /// Object names are case-insensitive in URLs and SOQL.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(name))
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Object::Case => "Case",
            Object::Contact => "Contact",
            Object::CaseComment => "CaseComment",
            Object::User => "User",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Object::Case => "Case",
            Object::Contact => "Contact",
            Object::CaseComment => "Case Comment",
            Object::User => "User",
        }
    }

    pub(crate) fn key_prefix(self) -> &'static str {
        match self {
            Object::Case => "500",
            Object::Contact => "003",
            Object::CaseComment => "00a",
            Object::User => "005",
        }
    }
}

/// Restricted picklists whose values come from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Picklist {
    Status,
    Priority,
    Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Id,
    /// A lookup to one of these objects; the relationship name is on the field.
    Reference(Object),
    /// Text up to `max` characters (`bytes`: counted in UTF-8 bytes).
    Text {
        max: usize,
        bytes: bool,
    },
    Picklist(Picklist),
    Boolean,
    DateTime,
    AutoNumber,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub name: String,
    pub label: String,
    pub kind: Kind,
    pub createable: bool,
    pub updateable: bool,
    /// Must have a value on insert (and can't be cleared).
    pub required: bool,
    pub external_id: bool,
    pub unique: bool,
    /// `Contact` for `ContactId`: the name SOQL uses to traverse the lookup.
    pub relationship: Option<&'static str>,
    /// Write-only fields (Case `Comments`) are never returned.
    pub readable: bool,
}

impl Field {
    fn new(name: &str, label: &str, kind: Kind) -> Self {
        Self {
            name: name.into(),
            label: label.into(),
            kind,
            createable: true,
            updateable: true,
            required: false,
            external_id: false,
            unique: false,
            relationship: None,
            readable: true,
        }
    }

    fn read_only(mut self) -> Self {
        self.createable = false;
        self.updateable = false;
        self
    }

    fn text(name: &str, label: &str, max: usize) -> Self {
        Self::new(name, label, Kind::Text { max, bytes: false })
    }

    fn lookup(name: &str, label: &str, target: Object, relationship: &'static str) -> Self {
        let mut f = Self::new(name, label, Kind::Reference(target));
        f.relationship = Some(relationship);
        f
    }
}

/// Id, audit fields and IsDeleted, which every object has and nobody writes.
fn system_fields(object: Object) -> (Vec<Field>, Vec<Field>) {
    let head = vec![Field::new("Id", &format!("{} ID", object.label()), Kind::Id).read_only()];
    let tail = vec![
        Field::new("CreatedDate", "Created Date", Kind::DateTime).read_only(),
        Field::lookup("CreatedById", "Created By ID", Object::User, "CreatedBy").read_only(),
        Field::new("LastModifiedDate", "Last Modified Date", Kind::DateTime).read_only(),
        Field::lookup(
            "LastModifiedById",
            "Last Modified By ID",
            Object::User,
            "LastModifiedBy",
        )
        .read_only(),
        Field::new("SystemModstamp", "System Modstamp", Kind::DateTime).read_only(),
        Field::new("IsDeleted", "Deleted", Kind::Boolean).read_only(),
    ];
    (head, tail)
}

#[derive(Debug, Clone)]
pub(crate) struct Schema {
    objects: Vec<(Object, Vec<Field>)>,
}

impl Schema {
    pub(crate) fn new(config: &Config) -> Self {
        let objects = Object::ALL
            .into_iter()
            .map(|object| {
                let (mut fields, tail) = system_fields(object);
                fields.extend(own_fields(object));
                for ext in config
                    .external_id_fields
                    .iter()
                    .filter(|e| e.object.eq_ignore_ascii_case(object.name()))
                {
                    let mut f = Field::text(&ext.field, &ext.field, 255);
                    f.external_id = true;
                    f.unique = ext.unique;
                    fields.push(f);
                }
                fields.extend(tail);
                (object, fields)
            })
            .collect();
        Self { objects }
    }

    pub(crate) fn fields(&self, object: Object) -> &[Field] {
        self.objects
            .iter()
            .find(|(o, _)| *o == object)
            .map(|(_, f)| f.as_slice())
            .unwrap_or_default()
    }

    /// A field by name, case-insensitively (as Salesforce matches them).
    pub(crate) fn field(&self, object: Object, name: &str) -> Option<&Field> {
        self.fields(object)
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The lookup field behind a relationship name (`Parent` on CaseComment).
    pub(crate) fn relationship(&self, object: Object, name: &str) -> Option<(&Field, Object)> {
        self.fields(object)
            .iter()
            .find_map(|f| match (&f.kind, f.relationship) {
                (Kind::Reference(target), Some(rel)) if rel.eq_ignore_ascii_case(name) => {
                    Some((f, *target))
                }
                _ => None,
            })
    }
}

fn own_fields(object: Object) -> Vec<Field> {
    match object {
        Object::Case => vec![
            Field::new("CaseNumber", "Case Number", Kind::AutoNumber).read_only(),
            Field::lookup("ContactId", "Contact ID", Object::Contact, "Contact"),
            Field::text("SuppliedName", "Name", 80),
            Field::text("SuppliedEmail", "Email Address", 80),
            Field::text("SuppliedPhone", "Phone", 40),
            Field::text("Type", "Case Type", 255),
            Field::text("Reason", "Case Reason", 255),
            Field::new("Origin", "Case Origin", Kind::Picklist(Picklist::Origin)),
            Field::text("Subject", "Subject", 255),
            Field::new("Priority", "Priority", Kind::Picklist(Picklist::Priority)),
            Field::text("Description", "Description", 32_000),
            Field::new("Status", "Status", Kind::Picklist(Picklist::Status)),
            Field::new("IsClosed", "Closed", Kind::Boolean).read_only(),
            Field::new("ClosedDate", "Closed Date", Kind::DateTime).read_only(),
            Field::lookup("OwnerId", "Owner ID", Object::User, "Owner"),
            Field {
                readable: false,
                ..Field::text("Comments", "Internal Comments", 4000)
            },
        ],
        Object::Contact => vec![
            Field {
                required: true,
                ..Field::text("LastName", "Last Name", 80)
            },
            Field::text("FirstName", "First Name", 40),
            Field::text("Name", "Full Name", 121).read_only(),
            Field::text("Email", "Email", 80),
            Field::text("Phone", "Business Phone", 40),
            Field::text("Description", "Contact Description", 32_000),
            Field::lookup("OwnerId", "Owner ID", Object::User, "Owner"),
        ],
        Object::CaseComment => vec![
            Field {
                required: true,
                updateable: false,
                ..Field::lookup("ParentId", "Parent ID", Object::Case, "Parent")
            },
            Field::new("IsPublished", "Published", Kind::Boolean),
            Field {
                required: true,
                ..Field::new(
                    "CommentBody",
                    "Body",
                    Kind::Text {
                        max: 4000,
                        bytes: true,
                    },
                )
            },
        ],
        Object::User => vec![
            Field::text("Username", "Username", 80).read_only(),
            Field::text("LastName", "Last Name", 80).read_only(),
            Field::text("FirstName", "First Name", 40).read_only(),
            Field::text("Name", "Full Name", 121).read_only(),
            Field::text("Email", "Email", 128).read_only(),
            Field::text("UserType", "User Type", 40).read_only(),
            Field::new("IsActive", "Active", Kind::Boolean).read_only(),
        ],
    }
}
