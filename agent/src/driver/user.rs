//! Who a process task runs as: its `user` (`name`, `uid`, `name:group`, `uid:gid`) resolved
//! through /etc/passwd and /etc/group.

use std::path::PathBuf;

/// The account a task runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Its name, or the uid as given when /etc/passwd has no entry for it.
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Its home folder, when /etc/passwd has one.
    pub home: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user '{0}' is not a name, uid, name:group or uid:gid")]
    Malformed(String),
    #[error("user '{0}' is not in /etc/passwd on this node")]
    Unknown(String),
    #[error("group '{group}' of user '{user}' is not in /etc/group on this node")]
    UnknownGroup { user: String, group: String },
    #[error("uid of user '{0}' is not in /etc/passwd on this node: give its group too (uid:gid)")]
    NoGroup(String),
    #[error("reading {path} to find user '{user}' failed: {source}")]
    Read {
        path: &'static str,
        user: String,
        #[source]
        source: std::io::Error,
    },
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

/// The users and groups of a node.
#[derive(Debug, Default)]
pub struct Accounts {
    users: Vec<Entry>,
    /// Group names and ids.
    groups: Vec<(String, u32)>,
}

impl Accounts {
    /// From the text of /etc/passwd and /etc/group. Lines that are not entries (comments,
    /// NIS `+` lines, ids that are not numbers) are skipped.
    pub fn parse(passwd: &str, group: &str) -> Accounts {
        let users = entries(passwd)
            .filter_map(|f| {
                Some(Entry {
                    name: f.first()?.to_string(),
                    uid: f.get(2)?.parse().ok()?,
                    gid: f.get(3)?.parse().ok()?,
                    home: f.get(5).map_or("", |h| h).to_string(),
                })
            })
            .collect();
        let groups = entries(group)
            .filter_map(|f| Some((f.first()?.to_string(), f.get(2)?.parse().ok()?)))
            .collect();
        Accounts { users, groups }
    }

    /// This node's accounts; `user` is named in the error.
    pub fn read(user: &str) -> Result<Accounts, UserError> {
        let read = |path: &'static str| {
            std::fs::read_to_string(path).map_err(|source| UserError::Read {
                path,
                user: user.to_string(),
                source,
            })
        };
        // A node without /etc/group still resolves numeric groups.
        let group = read("/etc/group").unwrap_or_default();
        Ok(Accounts::parse(&read("/etc/passwd")?, &group))
    }

    /// The account `user` names: a name or uid, optionally `:group` (a name or gid). A name's
    /// primary group is its entry's; a uid without an entry needs its group given.
    pub fn resolve(&self, user: &str) -> Result<Account, UserError> {
        let (who, group) = match user.trim().split_once(':') {
            Some((who, group)) => (who, Some(group).filter(|g| !g.is_empty())),
            None => (user.trim(), None),
        };
        if who.is_empty() {
            return Err(UserError::Malformed(user.to_string()));
        }
        let entry = match who.parse::<u32>() {
            Ok(uid) => self.users.iter().find(|e| e.uid == uid),
            Err(_) => self.users.iter().find(|e| e.name == who),
        };
        let uid = match (entry, who.parse::<u32>()) {
            (Some(e), _) => e.uid,
            (None, Ok(uid)) => uid,
            (None, Err(_)) => return Err(UserError::Unknown(user.to_string())),
        };
        let gid = match (group, entry) {
            (Some(group), _) => self.gid_of(user, group)?,
            (None, Some(e)) => e.gid,
            (None, None) => return Err(UserError::NoGroup(user.to_string())),
        };
        Ok(Account {
            name: entry.map_or(who, |e| &e.name).to_string(),
            uid,
            gid,
            home: entry
                .filter(|e| !e.home.is_empty())
                .map(|e| PathBuf::from(&e.home)),
        })
    }

    fn gid_of(&self, user: &str, group: &str) -> Result<u32, UserError> {
        if let Ok(gid) = group.parse() {
            return Ok(gid);
        }
        let found = self.groups.iter().find(|(name, _)| name == group);
        found
            .map(|(_, gid)| *gid)
            .ok_or_else(|| UserError::UnknownGroup {
                user: user.to_string(),
                group: group.to_string(),
            })
    }
}

/// The `:`-separated fields of each entry line.
fn entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(['+', '-']))
        .map(|l| l.split(':').collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
# a comment
root:x:0:0:root:/root:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
web:x:1000:1000:Web,,,:/home/web:/bin/sh
broken:x:not-a-uid:1:::
+::::::
";
    const GROUP: &str = "root:x:0:\nstaff:x:50:web\nnogroup:x:65534:\n";

    fn accounts() -> Accounts {
        Accounts::parse(PASSWD, GROUP)
    }

    #[test]
    fn passwd_lines_become_entries_and_others_are_skipped() {
        let accounts = accounts();
        let names: Vec<&str> = accounts.users.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "nobody", "web"]);
        assert_eq!(accounts.groups[1], ("staff".to_string(), 50));
    }

    #[test]
    fn a_name_resolves_to_its_entry() {
        let web = accounts().resolve("web").unwrap();
        let home = Some(PathBuf::from("/home/web"));
        assert_eq!(
            (web.name.as_str(), web.uid, web.gid, web.home),
            ("web", 1000, 1000, home)
        );
        let staff = accounts().resolve("web:staff").unwrap();
        assert_eq!((staff.uid, staff.gid), (1000, 50));
    }

    #[test]
    fn a_uid_resolves_to_its_entry_or_needs_a_group() {
        let nobody = accounts().resolve("65534").unwrap();
        assert_eq!((nobody.name.as_str(), nobody.gid), ("nobody", 65534));
        let bare = accounts().resolve("4242:4343").unwrap();
        assert_eq!(
            (bare.name.as_str(), bare.uid, bare.gid, bare.home),
            ("4242", 4242, 4343, None)
        );
        let err = accounts().resolve("4242").unwrap_err();
        assert!(matches!(err, UserError::NoGroup(_)), "{err}");
        assert!(err.to_string().contains("'4242'"), "{err}");
    }

    #[test]
    fn an_unknown_user_or_group_is_named_in_the_error() {
        let err = accounts().resolve("mallory").unwrap_err();
        assert!(matches!(err, UserError::Unknown(_)));
        assert_eq!(
            err.to_string(),
            "user 'mallory' is not in /etc/passwd on this node"
        );
        let err = accounts().resolve("web:wheel").unwrap_err();
        assert!(err.to_string().contains("'wheel'") && err.to_string().contains("'web:wheel'"));
        assert!(matches!(
            accounts().resolve(":0"),
            Err(UserError::Malformed(_))
        ));
    }
}
