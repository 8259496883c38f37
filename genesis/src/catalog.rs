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

    /// Finding 6 of issue 15 (R-SEC-5): consent codes go to the household registry's phone
    /// number by default, so that source must have one.
    #[test]
    fn finding_6_the_default_consent_phone_source_has_a_phone_field() {
        let c = default_catalog().unwrap();
        let id = crate::config::DEFAULT_CONSENT_PHONE_SOURCE;
        let s = c
            .sources
            .iter()
            .find(|s| s.id == id)
            .expect("in the catalog");
        assert_eq!(s.name, "户籍人口基本信息");
        assert!(s.person_field.is_some());
        let phone = s
            .fields
            .iter()
            .find(|f| f.ty == govchain_chaincode::catalog::FieldType::Phone)
            .expect("a phone field");
        assert!(
            !phone.required,
            "a registry record without a number stays valid"
        );
    }
}
