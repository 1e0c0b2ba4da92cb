//! Marathon's query parameters: repeated keys, case-insensitive booleans.

/// All `key=value` pairs of a query string, in order, repeated keys kept.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        Params(
            raw.and_then(|q| serde_urlencoded::from_str(q).ok())
                .unwrap_or_default(),
        )
    }

    /// A boolean flag: `true`, `TRUE`, `True` (and a bare key) are true.
    pub fn flag(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|(k, v)| k == name && (v.is_empty() || v.eq_ignore_ascii_case("true")))
    }

    /// A flag with Marathon's default when absent.
    pub fn flag_or(&self, name: &str, default: bool) -> bool {
        match self.get(name) {
            Some(v) => v.is_empty() || v.eq_ignore_ascii_case("true"),
            None => default,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// What `embed=` asks of apps, without Marathon's prefixes (`apps.`, `app.`,
    /// `group.apps.`, any of which it takes for any app response): `tasks`, `taskStats`; values
    /// may also be comma-separated (`embed=apps.tasks,apps.taskStats`).
    pub fn embeds(&self) -> Vec<&str> {
        self.all("embed")
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter_map(|v| {
                let v = v.trim();
                ["group.apps.", "apps.", "app."]
                    .iter()
                    .find_map(|p| v.strip_prefix(p))
            })
            .collect()
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Params;

    #[test]
    fn flags_ignore_case_and_keys_repeat() {
        let p = Params::parse(Some(
            "force=TRUE&embed=apps.tasks&embed=apps.counts&scale=False",
        ));
        assert!(p.flag("force"));
        assert!(!p.flag("scale"));
        assert!(!p.flag("wipe"));
        assert!(p.flag_or("partialUpdate", true));
        assert_eq!(p.all("embed"), vec!["apps.tasks", "apps.counts"]);
        assert_eq!(p.embeds(), vec!["tasks", "counts"]);
        let listed = Params::parse(Some("embed=app.taskStats,group.apps.readiness&embed=x.y"));
        assert_eq!(listed.embeds(), vec!["taskStats", "readiness"]);
    }
}
