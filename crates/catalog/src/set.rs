//! The schemas a config can name: everything registered (built-in and linked-in plugins) plus
//! custom definition files.

use std::path::Path;
use std::sync::Arc;

use auditsync_core::{registry, ConfigError, Schema};

use crate::defined::DefinedSchema;
use crate::definition::SchemaDefinition;

/// Registered schemas plus custom ones loaded from definition files.
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    custom: Vec<Arc<DefinedSchema>>,
}

impl SchemaSet {
    /// Only the registered schemas.
    pub fn registered() -> Self {
        Self::default()
    }

    /// The registered schemas plus one custom schema per file. A custom schema may not take
    /// a registered name or another file's name; errors name the file and the key.
    pub fn with_files<P: AsRef<Path>>(files: &[P]) -> Result<Self, ConfigError> {
        let mut set = Self::default();
        for (i, path) in files.iter().enumerate() {
            let path = path.as_ref();
            let def = SchemaDefinition::from_file(path)
                .map_err(|e| e.under(&format!("schema_files[{i}]")))?;
            let taken = registry::schema_names().contains(&def.name.as_str())
                || set.custom.iter().any(|s| s.definition().name == def.name);
            if taken {
                return Err(ConfigError::Invalid {
                    key: format!("schema_files[{i}]"),
                    message: format!(
                        "schema file {} defines `{}`, a name already taken",
                        path.display(),
                        def.name
                    ),
                });
            }
            let schema =
                DefinedSchema::new(def).map_err(|e| e.under(&format!("schema_files[{i}]")))?;
            set.custom.push(Arc::new(schema));
        }
        Ok(set)
    }

    /// Every name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = registry::schema_names()
            .into_iter()
            .map(String::from)
            .chain(self.custom.iter().map(|s| s.definition().name.clone()))
            .collect();
        names.sort();
        names
    }

    /// The schema called `name`; an unknown name is an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Schema>, ConfigError> {
        if let Some(custom) = self.custom.iter().find(|s| s.definition().name == name) {
            return Ok(custom.clone());
        }
        registry::build_schema(name).map_err(|e| match e {
            ConfigError::UnknownName {
                key, kind, name, ..
            } => ConfigError::UnknownName {
                key,
                kind,
                name,
                known: self.names(),
            },
            other => other,
        })
    }
}
