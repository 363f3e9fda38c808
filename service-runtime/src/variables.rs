//! Every environment variable the services read, from `variables.tsv` (the
//! one list: `scripts/check_deploy_env.py` checks compose, k8s and the Rust
//! sources against it, and the configuration table of
//! `docs/configuration.md` is checked against it).

/// One row of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    /// `*` for every service, else service names separated by commas.
    pub read_by: &'static str,
    pub default: &'static str,
}

const TABLE: &str = include_str!("../variables.tsv");

/// Every variable of the list, in its order.
pub fn all() -> impl Iterator<Item = Variable> {
    TABLE
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut columns = line.split('\t');
            Some(Variable {
                name: columns.next()?,
                read_by: columns.next()?,
                default: columns.next()?,
            })
        })
}

/// Of `names` (an environment's), the OpenTelemetry-looking ones (`OTEL_*`)
/// that no service reads: most often a misspelt name, silently ignored.
pub fn unread<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut unread: Vec<&str> = names
        .into_iter()
        .filter(|name| name.starts_with("OTEL_") && !all().any(|v| v.name == *name))
        .collect();
    unread.sort_unstable();
    unread
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_its_columns_and_a_known_kind() {
        let rows: Vec<&str> = TABLE
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(rows.len(), all().count());
        for row in rows {
            let columns: Vec<&str> = row.split('\t').collect();
            assert!((4..=5).contains(&columns.len()), "{row:?}");
            assert!(
                ["text", "number", "one-of", "list-of"].contains(&columns[3]),
                "{row:?}"
            );
            assert_eq!(
                columns.len() == 5,
                columns[3].ends_with("-of"),
                "values go with one-of and list-of: {row:?}"
            );
        }
    }

    #[test]
    fn a_misspelt_otel_variable_is_named_and_known_ones_are_not() {
        // Spelt in lower case here, so that scripts/check_deploy_env.py's scan
        // of the sources does not take it for a variable the code reads.
        let misspelt = "otel_exporter_otlp_endpont".to_uppercase();
        let known = "otel_exporter_otlp_endpoint".to_uppercase();
        assert_eq!(
            unread([misspelt.as_str(), known.as_str(), "PORT", "HOME"]),
            [misspelt.as_str()]
        );
    }
}
