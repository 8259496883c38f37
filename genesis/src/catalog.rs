//! The default catalog: the city's departments and 100 department data sources (R-ARC-6).
//!
//! Kept as data (`catalog.json`) so operators can read and review it; parsed and validated here.

use govchain_chaincode::catalog::DataSource;
use serde::Deserialize;

use crate::doc::GenesisError;

/// A department of the default catalog (keys are generated per genesis).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogDepartment {
    /// Short id (`gaj`).
    pub id: String,
    /// Display name (市公安局).
    pub name: String,
}

/// The default catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Departments, in the order validators are assigned.
    pub departments: Vec<CatalogDepartment>,
    /// Data sources.
    pub sources: Vec<DataSource>,
}

const DEFAULT_CATALOG: &str = include_str!("catalog.json");

/// The built-in catalog.
pub fn default_catalog() -> Result<Catalog, GenesisError> {
    serde_json::from_str(DEFAULT_CATALOG)
        .map_err(|e| GenesisError::Format(format!("default catalog: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_has_100_valid_sources_over_known_departments() {
        let c = default_catalog().unwrap();
        assert_eq!(c.sources.len(), 100, "R-ARC-6");
        for s in &c.sources {
            s.validate().unwrap_or_else(|e| panic!("{}: {e}", s.id));
            assert!(
                c.departments.iter().any(|d| d.id == s.department),
                "{}",
                s.id
            );
        }
        let person_sources = c
            .sources
            .iter()
            .filter(|s| s.person_field.is_some())
            .count();
        assert!(person_sources >= 85, "{person_sources}");
        let owners: std::collections::BTreeSet<_> =
            c.sources.iter().map(|s| &s.department).collect();
        assert!(owners.len() >= 15, "sources spread over many departments");
    }
}
