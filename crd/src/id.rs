//! Marathon app ids (`/prod/web`) and the record names they map to (`prod_web`), losslessly.
//!
//! Marathon id segments may hold lowercase letters, digits, `-` and `.` but never `_`, so `_`
//! can stand for `/` in a record name and an etcd key segment. It is also how Marathon itself
//! spells an app in its task ids (`prod_web.<uuid>`).

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

static SEGMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])$",
    )
    .expect("segment regex is valid")
});

/// An absolute Marathon path id, held as its segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(Vec<String>);

impl AppId {
    /// Parses `/prod/web`, `prod/web`, `//prod/web` (a doubled slash is tolerated, as Marathon
    /// did) or the record name `prod_web`. Relative segments `.` and `..` are resolved.
    pub fn parse(input: &str) -> Result<AppId, String> {
        let path = if input.contains('/') {
            input.to_string()
        } else {
            input.replace('_', "/")
        };
        let mut segments: Vec<String> = Vec::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            match segment {
                "." => {}
                ".." => {
                    segments.pop();
                }
                s if SEGMENT.is_match(s) => segments.push(s.to_string()),
                s => {
                    return Err(format!(
                        "'{s}' in id '{input}' is not a valid segment: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
                    ));
                }
            }
        }
        if segments.is_empty() {
            return Err(format!("id '{input}' is empty"));
        }
        Ok(AppId(segments))
    }

    /// The record name and etcd key segment: `prod_web`.
    pub fn name(&self) -> String {
        self.0.join("_")
    }

    /// The group holding this id: `/prod` for `/prod/web`, `/` for `/web`.
    pub fn parent(&self) -> String {
        format!("/{}", self.0[..self.0.len() - 1].join("/"))
    }

    /// An id relative to this one's group (`db`, `../backend`), or absolute, as Marathon's
    /// `canonicalPath`: `..` above the root stays at the root.
    pub fn resolve(&self, relative: &str) -> Result<AppId, String> {
        if relative.starts_with('/') {
            return AppId::parse(relative);
        }
        AppId::parse(&format!("{}/{relative}", self.parent()))
    }

    /// Marathon's absolute form: `/prod/web`.
    pub fn path(&self) -> String {
        format!("/{}", self.0.join("/"))
    }
}

/// Marathon's path of a stored record name (`prod_web` -> `/prod/web`); the name itself if it
/// is not one (no record is stored under such a name).
pub fn path_of(name: &str) -> String {
    AppId::parse(name)
        .map(|id| id.path())
        .unwrap_or_else(|_| name.to_string())
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_name_round_trip() {
        for path in ["/web", "/prod/web", "/a.b/c-d/e1", "/x/y/z/w"] {
            let id = AppId::parse(path).unwrap();
            assert_eq!(id.path(), path);
            assert_eq!(AppId::parse(&id.name()).unwrap(), id);
        }
        assert_eq!(AppId::parse("/prod/web").unwrap().name(), "prod_web");
    }

    #[test]
    fn accepts_marathon_spellings() {
        assert_eq!(AppId::parse("prod//web").unwrap().path(), "/prod/web");
        assert_eq!(
            AppId::parse("/prod/./x/../web").unwrap().path(),
            "/prod/web"
        );
        assert_eq!(AppId::parse("web").unwrap().path(), "/web");
    }

    #[test]
    fn relative_ids_resolve_against_the_group() {
        let web = AppId::parse("/prod/web").unwrap();
        assert_eq!(web.resolve("db").unwrap().path(), "/prod/db");
        assert_eq!(web.resolve("../backend").unwrap().path(), "/backend");
        assert_eq!(
            web.resolve("/product/database").unwrap().path(),
            "/product/database"
        );
        let top = AppId::parse("/zero-instance-app").unwrap();
        assert_eq!(top.resolve("../backend").unwrap().path(), "/backend");
    }

    #[test]
    fn rejects_bad_segments() {
        for bad in ["/Prod", "/-a", "/a-", "/a b", "/", "", "/a/.b", "/a_b/c"] {
            assert!(AppId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
